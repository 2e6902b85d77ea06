//! The control socket: a Unix stream socket (mode 0600 in the data directory by default) that
//! answers every connection with the counters as `name value` lines and closes. `portcullis
//! stats` reads it; so do the tests and any monitoring script.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

use crate::stats::ShardStats;
use crate::xdp::XdpState;

pub async fn serve(
    path: &Path,
    stats: Vec<Arc<ShardStats>>,
    xdp: &Mutex<XdpState>,
    started: Instant,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket file left by a killed process would make bind fail.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    tracing::info!(path = %path.display(), "control socket ready (portcullis stats)");
    loop {
        let (mut conn, _) = listener.accept().await?;
        let mut text = format!("uptime_seconds {}\n", started.elapsed().as_secs());
        text.push_str(&crate::stats::render(&stats));
        if let Ok(x) = xdp.lock() {
            text.push_str(&x.render());
        }
        // A slow reader must not hold up the next one for long.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            conn.write_all(text.as_bytes()),
        )
        .await;
    }
}

/// A future that never completes (replaces a failed control socket in the select loop).
pub async fn never() -> std::io::Result<()> {
    std::future::pending().await
}

/// Client side: reads the counters from a running server.
pub fn read(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
