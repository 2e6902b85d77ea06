//! End to end: attach to `lo` in a fresh network namespace and send real datagrams.

use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use portcullis_xdp_loader::{AttachedMode, Reason, XdpClient, XdpFilter, XdpMode, XdpSettings};

use crate::radius::{access_request, attr, user_attrs, SECRET, USER_NAME};
use crate::xdp_tests_enabled;

const PORT: u16 = 1812;
const COUNT: usize = 10;

/// A network namespace made for one test; deleted on drop, whatever happened.
struct Netns {
    name: String,
}

impl Netns {
    fn create(tag: &str) -> Netns {
        let name = format!("portcullis-xdp-test-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        let netns = Netns { name };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    /// Move the calling thread into the namespace (only this thread).
    fn enter(&self) {
        let file = File::open(format!("/run/netns/{}", self.name)).expect("open netns file");
        // SAFETY: setns on a valid namespace fd; it changes only the calling thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }

    fn lo_has_xdp(&self) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-d", "link", "show", "lo"])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).contains("xdp")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed: {status}");
}

fn sender(addr: Ipv4Addr) -> UdpSocket {
    UdpSocket::bind(SocketAddr::new(IpAddr::V4(addr), 0))
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"))
}

#[test]
fn attached_to_lo_drops_unknown_clients_and_forgeries() {
    if !xdp_tests_enabled() {
        return;
    }
    let netns = Netns::create("lo");
    let worker = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                netns.enter();
                run_in_namespace(&netns);
            })
            .join()
    });
    drop(netns);
    if let Err(panic) = worker {
        std::panic::resume_unwind(panic);
    }
}

fn run_in_namespace(netns: &Netns) {
    let known = Ipv4Addr::new(127, 0, 0, 1);
    let unknown = Ipv4Addr::new(127, 0, 0, 2);
    let settings = XdpSettings {
        interface: "lo".into(),
        mode: XdpMode::Auto,
        global_rate_pps: 0,
        global_burst: 0,
        ports: vec![PORT, PORT + 1],
        clients: vec![XdpClient::new((IpAddr::V4(known), 32), SECRET, true)],
    };
    let server = UdpSocket::bind((known, PORT)).expect("bind server socket");
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let from_known = sender(known);
    let from_unknown = sender(unknown);

    let filter = XdpFilter::attach(&settings).unwrap_or_else(|e| panic!("attach: {e:?}"));
    assert_eq!(filter.interface(), "lo");
    assert_eq!(
        filter.attached_mode(),
        AttachedMode::Generic,
        "lo has no native XDP"
    );
    assert!(netns.lo_has_xdp(), "ip link shows no XDP program on lo");
    let before = filter.counters().expect("counters");

    // Signed Access-Requests, told apart by their User-Name.
    let request = |name: &str, secret: &[u8]| {
        let mut attrs = attr(USER_NAME, name.as_bytes());
        attrs.extend(user_attrs());
        access_request(&attrs, secret)
    };
    // Unknown and forged first, then known, all from this thread: lo delivers in order, so
    // once every good datagram has arrived, any bad one that got through would be queued.
    for i in 0..COUNT {
        from_unknown
            .send_to(&request(&format!("unknown {i}"), SECRET), (known, PORT))
            .expect("send");
        from_known
            .send_to(&request(&format!("forged {i}"), b"guess"), (known, PORT))
            .expect("send");
    }
    for i in 0..COUNT {
        from_known
            .send_to(&request(&format!("known {i}"), SECRET), (known, PORT))
            .expect("send");
    }
    let mut buf = [0u8; 256];
    for i in 0..COUNT {
        let (n, from) = server
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i} from the known client: {e}"));
        assert_eq!(from.ip(), IpAddr::V4(known), "got {:?}", &buf[..n]);
        assert_eq!(&buf[..n], &request(&format!("known {i}"), SECRET)[..]);
    }
    server.set_nonblocking(true).expect("nonblocking");
    match server.recv_from(&mut buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("an extra datagram arrived: {other:?}"),
    }

    let after = filter.counters().expect("counters");
    let delta = |r: Reason| after.get(r) - before.get(r);
    assert_eq!(
        delta(Reason::DropUnknownClientV4),
        COUNT as u64,
        "\n{after}"
    );
    assert_eq!(delta(Reason::DropBadMa), COUNT as u64, "\n{after}");
    assert_eq!(delta(Reason::PassMaVerified), COUNT as u64, "\n{after}");

    // Detached on drop: the interface is clean and unknown clients get through again.
    drop(filter);
    assert!(!netns.lo_has_xdp(), "XDP still attached to lo after drop");
    server.set_nonblocking(false).expect("blocking");
    let after_detach = request("after detach", b"guess");
    from_unknown
        .send_to(&after_detach, (known, PORT))
        .expect("send");
    let (n, from) = server
        .recv_from(&mut buf)
        .expect("datagram from the unknown client after detach");
    assert_eq!(from.ip(), IpAddr::V4(unknown));
    assert_eq!(&buf[..n], &after_detach[..]);
}

#[test]
fn missing_interface_is_reported_by_name() {
    if !xdp_tests_enabled() {
        return;
    }
    let settings = XdpSettings {
        interface: "pcx-nosuch0".into(),
        mode: XdpMode::Generic,
        global_rate_pps: 0,
        global_burst: 0,
        ports: vec![PORT],
        clients: vec![],
    };
    let err = XdpFilter::attach(&settings).expect_err("no such interface");
    assert!(
        matches!(err, portcullis_xdp_loader::XdpError::NoSuchInterface { ref name } if name == "pcx-nosuch0"),
        "{err:?}"
    );
}
