//! Loads the Portcullis XDP pre-filter, fills its maps, attaches it to an interface and reads
//! its counters.
//!
//! The eBPF object (`xdp-filter/ebpf`) is embedded at build time by `build.rs` (see
//! [`program_embedded`]). [`XdpFilter::attach`] loads it, writes the RADIUS ports, the client
//! networks and each client's keys into its maps, then attaches it; dropping the [`XdpFilter`]
//! detaches it. The filter drops UDP datagrams to a RADIUS port from sources outside the client
//! networks, and from known clients drops malformed packets and Access-Request, Status-Server
//! and Accounting-Request packets whose authenticators do not verify with any of the client's
//! secrets; see `portcullis-xdp-common` for the counter reasons.
//!
//! Keys: for each secret the loader computes the MD5 states after the HMAC `ipad` and `opad`
//! blocks (so the kernel hashes only the packet) and also stores the plain secret, which the
//! Accounting-Request authenticator needs. The key array holds two generations; a reload
//! writes the new generation beside the old one, repoints each trie entry, and only then
//! clears the old generation, so no packet is judged with a half-written or wrong key.
//!
//! What this crate does not do: replace the server's own validation (the server validates
//! every request again, XDP or not), pinning, or sharing one program between processes.
//! [`test_run`] runs the program on hand-made frames without any interface, for tests.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::IpAddr;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, MapData, MapError, PerCpuArray, PerCpuValues};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{ProgramError, Xdp, XdpFlags};
use aya::{Ebpf, EbpfError, EbpfLoader};
use portcullis_xdp_common::{
    md5, ClientInfo, ClientKeyV4, ClientKeyV6, ClientKeys, PortConfig, RateLimit, SecretKey,
    FLAG_REQUIRE_MESSAGE_AUTHENTICATOR, MAP_CLIENTS_V4, MAP_CLIENTS_V6, MAP_CLIENT_COUNTERS,
    MAP_CLIENT_KEYS, MAP_COUNTERS, MAP_GLOBAL_LIMIT, MAP_PORTS, MAX_CLIENTS, MAX_KEYED_CLIENTS,
    MAX_PORTS, MAX_SECRETS, MAX_SECRET_LEN, PORTS_INDEX,
};
use zeroize::Zeroize;

pub use portcullis_xdp_common::{ClientCounters, RateLimit as CpuRateLimit, Reason};

/// Number of possible CPUs, i.e. of per-CPU token buckets a limit is spread over.
pub fn possible_cpus() -> u32 {
    aya::util::nr_cpus().map_or(1, |n| n.max(1) as u32)
}

/// The limit one CPU's bucket gets for a configured `rate_pps` and `burst` (see
/// [`CpuRateLimit::per_cpu`]): both divided by [`possible_cpus`], rounded up.
pub fn per_cpu_limit(rate_pps: u32, burst: u32) -> CpuRateLimit {
    CpuRateLimit::per_cpu(rate_pps, burst, possible_cpus())
}

pub mod test_run;

/// Name of the XDP function in the eBPF object.
const PROGRAM_NAME: &str = "portcullis_xdp";

/// The embedded eBPF object; empty when the crate was built without it.
fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/portcullis-xdp.o"))
}

/// Whether this binary was built with the eBPF object (via `cargo xtask build`).
pub fn program_embedded() -> bool {
    !object().is_empty()
}

/// How to attach the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Generic (SKB) mode: works on every interface, after the kernel allocated the skb.
    Generic,
    /// Native (driver) mode: fastest, needs driver support.
    Native,
    /// Native, falling back to generic when the driver refuses.
    #[default]
    Auto,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Generic => "generic",
            XdpMode::Native => "native",
            XdpMode::Auto => "auto",
        })
    }
}

/// The mode the program actually got attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    /// Generic (SKB) mode.
    Generic,
    /// Native (driver) mode.
    Native,
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachedMode::Generic => "generic (skb)",
            AttachedMode::Native => "native (driver)",
        })
    }
}

/// What to filter and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpSettings {
    /// Interface to attach to.
    pub interface: String,
    /// Attach mode.
    pub mode: XdpMode,
    /// RADIUS UDP ports to filter (authentication, accounting, ...), at most 8.
    pub ports: Vec<u16>,
    /// The clients, at most 4096 ([`MAX_KEYED_CLIENTS`](portcullis_xdp_common::MAX_KEYED_CLIENTS)).
    /// When two clients have the same network, the first one counts.
    pub clients: Vec<XdpClient>,
    /// Packets per second from all known clients together to the RADIUS ports (0 = unlimited),
    /// checked after each client's own limit. Spread over per-CPU buckets: see
    /// [`per_cpu_limit`].
    pub global_rate_pps: u32,
    /// Bucket size of the global limit in packets (0 = one second's worth).
    pub global_burst: u32,
}

/// One RADIUS client as the filter sees it: where it sends from and how to check its packets.
#[derive(Clone, PartialEq, Eq)]
pub struct XdpClient {
    /// The client network as (address, prefix length); host bits are ignored.
    pub network: (IpAddr, u8),
    /// The shared secrets, 1 to 128 octets each: one, or two during a change-over (a packet
    /// passes if it verifies with either). With none, the filter only checks the source
    /// address and the packet structure.
    pub secrets: Vec<Vec<u8>>,
    /// Drop an Access-Request without Message-Authenticator.
    pub require_message_authenticator: bool,
    /// Name for the per-client counters ([`XdpFilter::client_counters`]).
    pub name: String,
    /// Packets per second this client may send to the RADIUS ports (0 = unlimited), enforced
    /// before any RADIUS check. Spread over per-CPU buckets: see [`per_cpu_limit`].
    pub rate_pps: u32,
    /// Bucket size in packets (0 = one second's worth).
    pub burst: u32,
}

impl XdpClient {
    /// A client with one secret, named after its network, without rate limit.
    pub fn new(network: (IpAddr, u8), secret: &[u8], require_message_authenticator: bool) -> Self {
        XdpClient {
            network,
            secrets: vec![secret.to_vec()],
            require_message_authenticator,
            name: format!("{}/{}", network.0, network.1),
            rate_pps: 0,
            burst: 0,
        }
    }
}

impl Drop for XdpClient {
    fn drop(&mut self) {
        for secret in &mut self.secrets {
            secret.zeroize();
        }
    }
}

impl fmt::Debug for XdpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secrets.
        f.debug_struct("XdpClient")
            .field("name", &self.name)
            .field("network", &self.network)
            .field("secrets", &self.secrets.len())
            .field(
                "require_message_authenticator",
                &self.require_message_authenticator,
            )
            .field("rate_pps", &self.rate_pps)
            .field("burst", &self.burst)
            .finish()
    }
}

/// Why XDP could not be used.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The binary was built without the eBPF object.
    #[error("this binary was built without the XDP program; build with `cargo xtask build`")]
    NotEmbedded,
    /// The kernel refused for lack of privileges.
    #[error(
        "permission denied while {during}: XDP needs root or the CAP_BPF and CAP_NET_ADMIN \
         capabilities"
    )]
    PermissionDenied {
        /// What was being done.
        during: &'static str,
    },
    /// The interface does not exist (in this network namespace).
    #[error("no network interface named {name:?}")]
    NoSuchInterface {
        /// The interface name asked for.
        name: String,
    },
    /// The settings cannot be used (too many ports, bad prefix length, ...).
    #[error("invalid XDP settings: {reason}")]
    InvalidSettings {
        /// What is wrong.
        reason: String,
    },
    /// The embedded object does not have the expected program or map.
    #[error("the embedded XDP object is not the expected one: {reason}")]
    BadObject {
        /// What is missing.
        reason: String,
    },
    /// Parsing the object or creating its maps failed.
    #[error("loading the XDP object failed")]
    Load {
        /// The aya error.
        #[source]
        source: EbpfError,
    },
    /// The kernel verifier rejected the program (the source includes the verifier log).
    #[error("the kernel rejected the XDP program")]
    Verify {
        /// The aya error, with the verifier log.
        #[source]
        source: ProgramError,
    },
    /// Attaching to the interface failed.
    #[error("attaching XDP to {interface} in {mode} mode failed")]
    Attach {
        /// The interface.
        interface: String,
        /// The mode asked for (for `Auto`: the generic fallback also failed).
        mode: XdpMode,
        /// The aya error.
        #[source]
        source: ProgramError,
    },
    /// Reading or writing a map failed.
    #[error("XDP map {map} failed")]
    Map {
        /// The map name.
        map: &'static str,
        /// The aya error.
        #[source]
        source: MapError,
    },
    /// `BPF_PROG_TEST_RUN` failed.
    #[error("BPF_PROG_TEST_RUN failed")]
    TestRun {
        /// The syscall error.
        #[source]
        source: io::Error,
    },
}

/// Packet counts per [`Reason`], summed across CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    values: [u64; Reason::COUNT as usize],
}

impl Counters {
    /// The count for one reason.
    pub fn get(&self, reason: Reason) -> u64 {
        self.values[reason.index() as usize]
    }

    /// (reason name, count) for every reason, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.by_reason().map(|(r, n)| (r.name(), n))
    }

    /// (reason, count) for every reason, in index order.
    pub fn by_reason(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.iter().map(|r| (*r, self.get(*r)))
    }

    /// Packets dropped, all reasons together.
    pub fn dropped(&self) -> u64 {
        self.by_reason()
            .filter(|(r, _)| r.is_drop())
            .map(|(_, n)| n)
            .sum()
    }

    /// Packets passed, all reasons together.
    pub fn passed(&self) -> u64 {
        self.by_reason()
            .filter(|(r, _)| !r.is_drop())
            .map(|(_, n)| n)
            .sum()
    }

    /// Datagrams from known clients to a RADIUS port that were passed, verified or not (see
    /// [`Reason::is_known_client_pass`]).
    pub fn known_client_passed(&self) -> u64 {
        self.by_reason()
            .filter(|(r, _)| r.is_known_client_pass())
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = Reason::ALL
            .iter()
            .map(|r| r.name().len())
            .max()
            .unwrap_or(0);
        writeln!(f, "{:<width$}  {:>12}", "reason", "packets")?;
        for (name, n) in self.iter() {
            writeln!(f, "{name:<width$}  {n:>12}")?;
        }
        Ok(())
    }
}

/// The XDP filter, loaded and attached to one interface. Dropping it detaches the program.
pub struct XdpFilter {
    // Field order matters for drop: the link goes before the program and maps.
    link: Option<XdpLinkId>,
    loaded: Loaded,
    interface: String,
    mode: AttachedMode,
}

impl fmt::Debug for XdpFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpFilter")
            .field("interface", &self.interface)
            .field("mode", &self.mode)
            .field("clients", &self.loaded.clients.len())
            .finish_non_exhaustive()
    }
}

impl XdpFilter {
    /// Load the program, fill its maps from `settings`, then attach it to the interface.
    pub fn attach(settings: &XdpSettings) -> Result<XdpFilter, XdpError> {
        let if_index = interface_index(&settings.interface)?;
        let mut loaded = Loaded::load(settings)?;
        let (link, mode) = loaded.attach(if_index, &settings.interface, settings.mode)?;
        Ok(XdpFilter {
            link: Some(link),
            loaded,
            interface: settings.interface.clone(),
            mode,
        })
    }

    /// The mode the program runs in.
    pub fn attached_mode(&self) -> AttachedMode {
        self.mode
    }

    /// The interface the program is attached to.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Replace the clients and their keys (config reload): the new keys are written beside the
    /// old ones, new and changed trie entries are inserted, then the removed ones deleted and
    /// the old keys cleared, so a client present in both lists is never dropped meanwhile.
    pub fn replace_clients(&mut self, clients: &[XdpClient]) -> Result<(), XdpError> {
        self.loaded.replace_clients(clients)
    }

    /// Packet counts per reason, summed across CPUs.
    pub fn counters(&self) -> Result<Counters, XdpError> {
        self.loaded.counters()
    }

    /// Each client's counters (name, counts summed across CPUs), in configuration order. They
    /// start from zero at every [`replace_clients`](Self::replace_clients).
    pub fn client_counters(&self) -> Result<Vec<(String, ClientCounters)>, XdpError> {
        self.loaded.client_counters()
    }

    /// Instructions the verifier processed when loading the program, if the kernel says.
    pub fn verified_instructions(&self) -> Option<u32> {
        self.loaded.verified_instructions()
    }
}

impl Drop for XdpFilter {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            if let Ok(program) = self.loaded.program_mut() {
                // Nothing useful to do on failure: dropping the program closes the link fd,
                // which detaches it anyway.
                let _ = program.detach(link);
            }
        }
    }
}

/// A client network with the host bits cleared; the order is only for set operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ClientNet {
    V4(ClientKeyV4, u8),
    V6(ClientKeyV6, u8),
}

impl ClientNet {
    fn new(addr: IpAddr, prefix_len: u8) -> Result<ClientNet, XdpError> {
        let invalid = |max: u8| XdpError::InvalidSettings {
            reason: format!("client {addr}/{prefix_len}: prefix length over {max}"),
        };
        match addr {
            IpAddr::V4(v4) => {
                if prefix_len > 32 {
                    return Err(invalid(32));
                }
                Ok(ClientNet::V4(mask(v4.octets(), prefix_len), prefix_len))
            }
            IpAddr::V6(v6) => {
                if prefix_len > 128 {
                    return Err(invalid(128));
                }
                // An IPv4-mapped network is an IPv4 network on the wire.
                if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix_len >= 96) {
                    let len = prefix_len - 96;
                    return Ok(ClientNet::V4(mask(v4.octets(), len), len));
                }
                Ok(ClientNet::V6(mask(v6.octets(), prefix_len), prefix_len))
            }
        }
    }
}

fn mask<const N: usize>(mut bytes: [u8; N], prefix_len: u8) -> [u8; N] {
    for (i, b) in bytes.iter_mut().enumerate() {
        let bits_before = i * 8;
        let keep = usize::from(prefix_len).saturating_sub(bits_before).min(8);
        *b &= match keep {
            0 => 0,
            k => 0xFFu8 << (8 - k),
        };
    }
    bytes
}

/// The clients ready for the maps: each network with the position of its client, and the
/// keys of every client by position.
struct ClientTables {
    nets: BTreeMap<ClientNet, u32>,
    keys: Vec<ClientKeys>,
    names: Vec<String>,
}

impl Drop for ClientTables {
    fn drop(&mut self) {
        // The keys hold the secrets in clear; do not leave them in freed memory.
        for keys in &mut self.keys {
            for secret in &mut keys.secrets {
                secret.bytes.zeroize();
                secret.inner.zeroize();
                secret.outer.zeroize();
            }
        }
    }
}

/// Normalize, number and key the clients; the value of each network is the first position in
/// the list that names it.
fn normalize_clients(clients: &[XdpClient]) -> Result<ClientTables, XdpError> {
    if clients.len() > MAX_KEYED_CLIENTS as usize {
        return Err(XdpError::InvalidSettings {
            reason: format!("{} clients; at most {MAX_KEYED_CLIENTS}", clients.len()),
        });
    }
    let mut nets = BTreeMap::new();
    let mut keys = Vec::with_capacity(clients.len());
    let mut names = Vec::with_capacity(clients.len());
    let (mut v4, mut v6) = (0u32, 0u32);
    for (index, client) in clients.iter().enumerate() {
        let (addr, prefix_len) = client.network;
        let net = ClientNet::new(addr, prefix_len)?;
        keys.push(client_keys(client)?);
        names.push(client.name.clone());
        // At most MAX_KEYED_CLIENTS, checked above.
        let index = index as u32;
        if nets.contains_key(&net) {
            continue;
        }
        match net {
            ClientNet::V4(..) => v4 += 1,
            ClientNet::V6(..) => v6 += 1,
        }
        nets.insert(net, index);
    }
    if v4 > MAX_CLIENTS || v6 > MAX_CLIENTS {
        return Err(XdpError::InvalidSettings {
            reason: format!(
                "{v4} IPv4 and {v6} IPv6 client networks; at most {MAX_CLIENTS} of each"
            ),
        });
    }
    Ok(ClientTables { nets, keys, names })
}

/// The map value for one client.
fn client_keys(client: &XdpClient) -> Result<ClientKeys, XdpError> {
    let (addr, prefix_len) = client.network;
    if client.secrets.len() > MAX_SECRETS {
        return Err(XdpError::InvalidSettings {
            reason: format!(
                "client {addr}/{prefix_len}: {} secrets; at most {MAX_SECRETS}",
                client.secrets.len()
            ),
        });
    }
    let mut keys = ClientKeys::EMPTY;
    for (slot, secret) in keys.secrets.iter_mut().zip(&client.secrets) {
        *slot = secret_key(secret).ok_or_else(|| XdpError::InvalidSettings {
            reason: format!(
                "client {addr}/{prefix_len}: a secret must have 1 to {MAX_SECRET_LEN} octets"
            ),
        })?;
    }
    // At most MAX_SECRETS, checked above.
    keys.count = client.secrets.len() as u32;
    if client.require_message_authenticator {
        keys.flags |= FLAG_REQUIRE_MESSAGE_AUTHENTICATOR;
    }
    keys.limit = per_cpu_limit(client.rate_pps, client.burst);
    Ok(keys)
}

/// The HMAC-MD5 key states and the plain bytes of one secret; `None` if it is empty or longer
/// than [`MAX_SECRET_LEN`].
fn secret_key(secret: &[u8]) -> Option<SecretKey> {
    if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
        return None;
    }
    // RFC 2104: a key longer than the block is replaced by its hash; then zero-padded.
    let mut key = [0u8; md5::BLOCK_LEN];
    if secret.len() > md5::BLOCK_LEN {
        key[..16].copy_from_slice(&md5::digest(secret));
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    let pad_state = |pad: u8| {
        let mut block = key;
        for b in &mut block {
            *b ^= pad;
        }
        let mut state = md5::IV;
        md5::compress(&mut state, &md5::block_words(&block));
        state
    };
    let mut out = SecretKey::EMPTY;
    out.inner = pad_state(0x36);
    out.outer = pad_state(0x5c);
    out.len = secret.len() as u32;
    out.bytes[..secret.len()].copy_from_slice(secret);
    key.zeroize();
    Some(out)
}

fn port_config(ports: &[u16]) -> Result<PortConfig, XdpError> {
    let mut unique: Vec<u16> = ports.to_vec();
    unique.sort_unstable();
    unique.dedup();
    if unique.is_empty() {
        return Err(XdpError::InvalidSettings {
            reason: "no RADIUS port to filter".into(),
        });
    }
    if unique.contains(&0) {
        return Err(XdpError::InvalidSettings {
            reason: "port 0 cannot be filtered".into(),
        });
    }
    PortConfig::from_ports(&unique).ok_or_else(|| XdpError::InvalidSettings {
        reason: format!("{} ports; at most {MAX_PORTS}", unique.len()),
    })
}

fn interface_index(name: &str) -> Result<u32, XdpError> {
    let bad = name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace());
    if bad {
        return Err(XdpError::InvalidSettings {
            reason: format!("{name:?} is not a valid interface name"),
        });
    }
    let c_name = std::ffi::CString::new(name).map_err(|_| XdpError::InvalidSettings {
        reason: format!("{name:?} is not a valid interface name"),
    })?;
    // SAFETY: c_name is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(XdpError::NoSuchInterface {
            name: name.to_owned(),
        });
    }
    Ok(index)
}

/// Whether an error chain contains an `EPERM` from the kernel.
fn is_permission_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(libc::EPERM) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

/// Raise `RLIMIT_MEMLOCK` for kernels that still charge BPF maps to it (before 5.11); newer
/// kernels use memcg accounting and ignore it. Best effort.
fn raise_memlock_rlimit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return;
    }
    let wanted = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &wanted) } != 0 {
        let up_to_hard = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &up_to_hard) };
    }
}

/// The program and its maps, loaded into the kernel but not attached.
struct Loaded {
    ebpf: Ebpf,
    /// Client networks currently in the tries, with their trie values.
    clients: BTreeMap<ClientNet, ClientInfo>,
    /// The key generation in use (0 or 1) and how many slots of it are filled; `None` before
    /// the first install.
    keys: Option<(u32, u32)>,
    /// Names of the clients of the generation in use, by position.
    names: Vec<String>,
}

impl Loaded {
    fn load(settings: &XdpSettings) -> Result<Loaded, XdpError> {
        if !program_embedded() {
            return Err(XdpError::NotEmbedded);
        }
        let ports = port_config(&settings.ports)?;
        let tables = normalize_clients(&settings.clients)?;
        raise_memlock_rlimit();

        let ebpf = EbpfLoader::new().load(object()).map_err(|source| {
            if is_permission_error(&source) {
                XdpError::PermissionDenied {
                    during: "creating the XDP maps",
                }
            } else {
                XdpError::Load { source }
            }
        })?;
        let mut loaded = Loaded {
            ebpf,
            clients: BTreeMap::new(),
            keys: None,
            names: Vec::new(),
        };
        loaded.program_mut()?.load().map_err(|source| {
            if is_permission_error(&source) {
                XdpError::PermissionDenied {
                    during: "loading the XDP program",
                }
            } else {
                XdpError::Verify { source }
            }
        })?;
        loaded.set_ports(&ports)?;
        loaded.set_global_limit(per_cpu_limit(
            settings.global_rate_pps,
            settings.global_burst,
        ))?;
        loaded.install_clients(tables)?;
        Ok(loaded)
    }

    fn program_mut(&mut self) -> Result<&mut Xdp, XdpError> {
        let program = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| XdpError::BadObject {
                reason: format!("no program {PROGRAM_NAME}"),
            })?;
        program.try_into().map_err(|_| XdpError::BadObject {
            reason: format!("{PROGRAM_NAME} is not an XDP program"),
        })
    }

    fn program(&self) -> Result<&Xdp, XdpError> {
        let program = self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or_else(|| XdpError::BadObject {
                reason: format!("no program {PROGRAM_NAME}"),
            })?;
        program.try_into().map_err(|_| XdpError::BadObject {
            reason: format!("{PROGRAM_NAME} is not an XDP program"),
        })
    }

    fn attach(
        &mut self,
        if_index: u32,
        interface: &str,
        mode: XdpMode,
    ) -> Result<(XdpLinkId, AttachedMode), XdpError> {
        let program = self.program_mut()?;
        let attach_error = |source: ProgramError| {
            if is_permission_error(&source) {
                XdpError::PermissionDenied {
                    during: "attaching the XDP program",
                }
            } else {
                XdpError::Attach {
                    interface: interface.to_owned(),
                    mode,
                    source,
                }
            }
        };
        match mode {
            XdpMode::Generic => program
                .attach_to_if_index(if_index, XdpFlags::SKB_MODE)
                .map(|link| (link, AttachedMode::Generic))
                .map_err(attach_error),
            XdpMode::Native => program
                .attach_to_if_index(if_index, XdpFlags::DRV_MODE)
                .map(|link| (link, AttachedMode::Native))
                .map_err(attach_error),
            XdpMode::Auto => match program.attach_to_if_index(if_index, XdpFlags::DRV_MODE) {
                Ok(link) => Ok((link, AttachedMode::Native)),
                Err(native) if is_permission_error(&native) => Err(attach_error(native)),
                Err(_) => program
                    .attach_to_if_index(if_index, XdpFlags::SKB_MODE)
                    .map(|link| (link, AttachedMode::Generic))
                    .map_err(attach_error),
            },
        }
    }

    fn set_ports(&mut self, ports: &PortConfig) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut(MAP_PORTS)
            .ok_or_else(|| missing(MAP_PORTS))?;
        let mut array: Array<&mut MapData, PortConfig> =
            Array::try_from(map).map_err(|source| XdpError::Map {
                map: MAP_PORTS,
                source,
            })?;
        array
            .set(PORTS_INDEX, ports, 0)
            .map_err(|source| XdpError::Map {
                map: MAP_PORTS,
                source,
            })
    }

    fn set_global_limit(&mut self, limit: RateLimit) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut(MAP_GLOBAL_LIMIT)
            .ok_or_else(|| missing(MAP_GLOBAL_LIMIT))?;
        let mut array: Array<&mut MapData, RateLimit> =
            Array::try_from(map).map_err(|source| XdpError::Map {
                map: MAP_GLOBAL_LIMIT,
                source,
            })?;
        array.set(0, limit, 0).map_err(|source| XdpError::Map {
            map: MAP_GLOBAL_LIMIT,
            source,
        })
    }

    /// Zero the per-client counters of `slot` on every CPU.
    fn clear_client_counters(&mut self, slot: u32) -> Result<(), XdpError> {
        let map_error = |source| XdpError::Map {
            map: MAP_CLIENT_COUNTERS,
            source,
        };
        let map = self
            .ebpf
            .map_mut(MAP_CLIENT_COUNTERS)
            .ok_or_else(|| missing(MAP_CLIENT_COUNTERS))?;
        let mut array: PerCpuArray<&mut MapData, ClientCounters> =
            PerCpuArray::try_from(map).map_err(map_error)?;
        let zeros =
            PerCpuValues::try_from(vec![ClientCounters::default(); possible_cpus() as usize])
                .map_err(|e| XdpError::InvalidSettings {
                    reason: format!("per-CPU counter values: {e}"),
                })?;
        array.set(slot, zeros, 0).map_err(map_error)
    }

    fn client_counters(&self) -> Result<Vec<(String, ClientCounters)>, XdpError> {
        let map_error = |source| XdpError::Map {
            map: MAP_CLIENT_COUNTERS,
            source,
        };
        let Some((generation, _)) = self.keys else {
            return Ok(Vec::new());
        };
        let base = generation * MAX_KEYED_CLIENTS;
        let map = self
            .ebpf
            .map(MAP_CLIENT_COUNTERS)
            .ok_or_else(|| missing(MAP_CLIENT_COUNTERS))?;
        let array: PerCpuArray<&MapData, ClientCounters> =
            PerCpuArray::try_from(map).map_err(map_error)?;
        let mut out = Vec::with_capacity(self.names.len());
        for (index, name) in self.names.iter().enumerate() {
            // index < MAX_KEYED_CLIENTS (checked by normalize_clients).
            let per_cpu = array.get(&(base + index as u32), 0).map_err(map_error)?;
            let mut sum = ClientCounters::default();
            for c in per_cpu.iter() {
                sum.add(c);
            }
            out.push((name.clone(), sum));
        }
        Ok(out)
    }

    fn replace_clients(&mut self, clients: &[XdpClient]) -> Result<(), XdpError> {
        let tables = normalize_clients(clients)?;
        self.install_clients(tables)
    }

    /// Write the keys into the unused generation, point every wanted network at them (insert
    /// or update), delete the networks no longer wanted, then clear the old generation.
    ///
    /// On an error midway the tries point into either generation, both intact; the next
    /// install starts over.
    fn install_clients(&mut self, tables: ClientTables) -> Result<(), XdpError> {
        let generation = match self.keys {
            None => 0,
            Some((current, _)) => 1 - current,
        };
        let base = generation * MAX_KEYED_CLIENTS;
        for (index, keys) in tables.keys.iter().enumerate() {
            // index < MAX_KEYED_CLIENTS (checked by normalize_clients).
            self.set_keys(base + index as u32, keys)?;
            // The slot's counters start from zero (it last served two reloads ago).
            self.clear_client_counters(base + index as u32)?;
        }
        for (net, index) in &tables.nets {
            let info = ClientInfo {
                index: *index,
                slot: base + index,
            };
            self.trie_insert(*net, info)?;
            self.clients.insert(*net, info);
        }
        let stale: Vec<ClientNet> = self
            .clients
            .keys()
            .filter(|net| !tables.nets.contains_key(net))
            .copied()
            .collect();
        for net in stale {
            self.trie_remove(net)?;
            self.clients.remove(&net);
        }
        // Nothing points at the old generation any more: clear it, so no secret lingers in a
        // map slot that is not in use. (A packet that looked its slot up just before the
        // switch may still read it; an empty entry makes it pass unchecked, to userspace.)
        let old = self.keys.replace((generation, tables.keys.len() as u32));
        self.names = tables.names.clone();
        if let Some((old_generation, old_len)) = old {
            let old_base = old_generation * MAX_KEYED_CLIENTS;
            for index in 0..old_len {
                self.set_keys(old_base + index, &ClientKeys::EMPTY)?;
            }
        }
        Ok(())
    }

    fn set_keys(&mut self, slot: u32, keys: &ClientKeys) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut(MAP_CLIENT_KEYS)
            .ok_or_else(|| missing(MAP_CLIENT_KEYS))?;
        let mut array: Array<&mut MapData, ClientKeys> =
            Array::try_from(map).map_err(|source| XdpError::Map {
                map: MAP_CLIENT_KEYS,
                source,
            })?;
        array.set(slot, keys, 0).map_err(|source| XdpError::Map {
            map: MAP_CLIENT_KEYS,
            source,
        })
    }

    fn trie_insert(&mut self, net: ClientNet, info: ClientInfo) -> Result<(), XdpError> {
        match net {
            ClientNet::V4(data, len) => {
                let map_name = MAP_CLIENTS_V4;
                let mut trie = self.trie::<ClientKeyV4>(map_name)?;
                trie.insert(&Key::new(u32::from(len), data), info, 0)
                    .map_err(|source| XdpError::Map {
                        map: map_name,
                        source,
                    })
            }
            ClientNet::V6(data, len) => {
                let map_name = MAP_CLIENTS_V6;
                let mut trie = self.trie::<ClientKeyV6>(map_name)?;
                trie.insert(&Key::new(u32::from(len), data), info, 0)
                    .map_err(|source| XdpError::Map {
                        map: map_name,
                        source,
                    })
            }
        }
    }

    fn trie_remove(&mut self, net: ClientNet) -> Result<(), XdpError> {
        let result = match net {
            ClientNet::V4(data, len) => self
                .trie::<ClientKeyV4>(MAP_CLIENTS_V4)?
                .remove(&Key::new(u32::from(len), data))
                .map_err(|source| (MAP_CLIENTS_V4, source)),
            ClientNet::V6(data, len) => self
                .trie::<ClientKeyV6>(MAP_CLIENTS_V6)?
                .remove(&Key::new(u32::from(len), data))
                .map_err(|source| (MAP_CLIENTS_V6, source)),
        };
        match result {
            Ok(()) => Ok(()),
            // Already gone is what we wanted.
            Err((_, MapError::KeyNotFound)) => Ok(()),
            Err((map, source)) => Err(XdpError::Map { map, source }),
        }
    }

    fn trie<K: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<LpmTrie<&mut MapData, K, ClientInfo>, XdpError> {
        let map = self.ebpf.map_mut(name).ok_or_else(|| missing(name))?;
        LpmTrie::try_from(map).map_err(|source| XdpError::Map { map: name, source })
    }

    fn counters(&self) -> Result<Counters, XdpError> {
        let map = self
            .ebpf
            .map(MAP_COUNTERS)
            .ok_or_else(|| missing(MAP_COUNTERS))?;
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|source| XdpError::Map {
                map: MAP_COUNTERS,
                source,
            })?;
        let mut counters = Counters::default();
        for reason in Reason::ALL {
            let per_cpu = array
                .get(&reason.index(), 0)
                .map_err(|source| XdpError::Map {
                    map: MAP_COUNTERS,
                    source,
                })?;
            counters.values[reason.index() as usize] =
                per_cpu.iter().fold(0u64, |sum, n| sum.wrapping_add(*n));
        }
        Ok(counters)
    }

    fn verified_instructions(&self) -> Option<u32> {
        self.program()
            .ok()?
            .info()
            .ok()?
            .verified_instruction_count()
    }
}

fn missing(map: &str) -> XdpError {
    XdpError::BadObject {
        reason: format!("no map {map}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn host_bits_are_cleared() {
        assert_eq!(mask([10, 1, 2, 3], 8), [10, 0, 0, 0]);
        assert_eq!(mask([10, 1, 2, 3], 0), [0, 0, 0, 0]);
        assert_eq!(mask([10, 1, 2, 3], 32), [10, 1, 2, 3]);
        assert_eq!(mask([0xFF, 0xFF, 0xFF, 0xFF], 20), [0xFF, 0xFF, 0xF0, 0]);
    }

    fn client(network: (IpAddr, u8)) -> XdpClient {
        XdpClient::new(network, b"secret", true)
    }

    #[test]
    fn clients_are_normalized_and_deduplicated() {
        let clients = [
            client((IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 24)),
            client((IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), 24)),
            client((
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 1, 2, 3, 4)),
                64,
            )),
            client((
                IpAddr::V6(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped()),
                128,
            )),
        ];
        let tables = normalize_clients(&clients).expect("valid clients");
        assert_eq!(tables.keys.len(), 4);
        let nets = tables.nets.clone();
        let expected: Vec<(ClientNet, u32)> = vec![
            (ClientNet::V4([192, 0, 2, 0], 24), 0),
            (ClientNet::V4([198, 51, 100, 1], 32), 3),
            (
                ClientNet::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0).octets(), 64),
                2,
            ),
        ];
        assert_eq!(nets.into_iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn bad_settings_are_refused() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(matches!(
            normalize_clients(&[client((v4, 33))]),
            Err(XdpError::InvalidSettings { .. })
        ));
        for secrets in [
            vec![],
            vec![vec![]],
            vec![vec![b'x'; MAX_SECRET_LEN + 1]],
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
        ] {
            let mut c = XdpClient::new((v4, 32), b"x", false);
            c.secrets = secrets;
            let result = normalize_clients(&[c]);
            // No secret at all is allowed (the filter then checks only the structure).
            if let Ok(tables) = &result {
                assert_eq!(tables.keys[0].count, 0);
                continue;
            }
            assert!(
                matches!(result, Err(XdpError::InvalidSettings { .. })),
                "{:?}",
                result.err()
            );
        }
        let too_many: Vec<XdpClient> = (0..=MAX_KEYED_CLIENTS)
            .map(|k| client((IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + k)), 32)))
            .collect();
        assert!(matches!(
            normalize_clients(&too_many),
            Err(XdpError::InvalidSettings { .. })
        ));
        assert!(matches!(
            port_config(&[]),
            Err(XdpError::InvalidSettings { .. })
        ));
        assert!(matches!(
            port_config(&[0]),
            Err(XdpError::InvalidSettings { .. })
        ));
        assert!(matches!(
            port_config(&[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Err(XdpError::InvalidSettings { .. })
        ));
        let ok = port_config(&[1813, 1812, 1812]).expect("two distinct ports");
        assert_eq!(ok.count, 2);
        assert!(matches!(
            interface_index("no/such"),
            Err(XdpError::InvalidSettings { .. })
        ));
        assert!(matches!(
            interface_index("pcx-absent0"),
            Err(XdpError::NoSuchInterface { .. })
        ));
    }

    /// HMAC-MD5 finished from the precomputed states, as the XDP program does it.
    fn hmac_from_states(key: &SecretKey, message: &[u8]) -> [u8; 16] {
        let mut state = key.inner;
        let mut padded = message.to_vec();
        padded.push(0x80);
        while padded.len() % 64 != 56 {
            padded.push(0);
        }
        padded.extend_from_slice(&(((64 + message.len()) as u64) * 8).to_le_bytes());
        for block in padded.chunks_exact(64) {
            let block: [u8; 64] = block.try_into().expect("64 octets");
            md5::compress(&mut state, &md5::block_words(&block));
        }
        let mut outer_block = [0u8; 64];
        outer_block[..16].copy_from_slice(&md5::state_bytes(&state));
        outer_block[16] = 0x80;
        outer_block[56..58].copy_from_slice(&((64u16 + 16) * 8).to_le_bytes());
        let mut outer = key.outer;
        md5::compress(&mut outer, &md5::block_words(&outer_block));
        md5::state_bytes(&outer)
    }

    #[test]
    fn precomputed_key_states_give_the_standard_hmac() {
        use hmac::{Hmac, Mac};
        let message: Vec<u8> = (0..300u16).map(|k| (k * 13) as u8).collect();
        for secret_len in [1, 10, 16, 63, 64, 65, 100, MAX_SECRET_LEN] {
            let secret: Vec<u8> = (0..secret_len).map(|k| (k * 7 + 1) as u8).collect();
            let key = secret_key(&secret).expect("valid secret");
            assert_eq!(key.len as usize, secret_len);
            assert_eq!(&key.bytes[..secret_len], &secret[..]);
            assert!(key.bytes[secret_len..].iter().all(|b| *b == 0));
            for message_len in [0, 20, 55, 56, 64, 300] {
                let mut mac =
                    Hmac::<md5_crate::Md5>::new_from_slice(&secret).expect("any key length");
                mac.update(&message[..message_len]);
                let expected: [u8; 16] = mac.finalize().into_bytes().into();
                assert_eq!(
                    hmac_from_states(&key, &message[..message_len]),
                    expected,
                    "secret {secret_len} octets, message {message_len} octets"
                );
            }
        }
        assert!(secret_key(&[]).is_none());
        assert!(secret_key(&[1; MAX_SECRET_LEN + 1]).is_none());
    }

    #[test]
    fn client_keys_carry_count_and_policy() {
        let v4 = (IpAddr::V4(Ipv4Addr::LOCALHOST), 32);
        let mut two = XdpClient::new(v4, b"x", true);
        two.secrets = vec![b"old".to_vec(), b"new".to_vec()];
        two.rate_pps = 10;
        two.burst = 4;
        let keys = client_keys(&two).expect("valid");
        assert_eq!(keys.count, 2);
        assert_eq!(keys.flags, FLAG_REQUIRE_MESSAGE_AUTHENTICATOR);
        assert_eq!(&keys.secrets[1].bytes[..3], b"new");
        assert_eq!(keys.limit, per_cpu_limit(10, 4));
        assert!(keys.limit.rate_pps >= 10 / possible_cpus());
        let one = client_keys(&XdpClient::new(v4, b"s", false)).expect("valid");
        assert_eq!(one.count, 1);
        assert_eq!(one.flags, 0);
        assert_eq!(one.secrets[1], SecretKey::EMPTY);
        assert_eq!(one.limit, RateLimit::UNLIMITED);
        let shown = format!("{two:?} {:?}", keys.secrets[0]);
        assert!(!shown.contains("old") && !shown.contains("111"), "{shown}");
    }

    #[test]
    fn counters_display_every_reason() {
        let mut c = Counters::default();
        c.values[Reason::DropUnknownClientV4.index() as usize] = 7;
        c.values[Reason::PassMaVerified.index() as usize] = 2;
        c.values[Reason::PassAcctAuthVerified.index() as usize] = 3;
        c.values[Reason::PassOtherPort.index() as usize] = 4;
        c.values[Reason::DropBadMa.index() as usize] = 5;
        let text = c.to_string();
        for r in Reason::ALL {
            assert!(text.contains(r.name()), "{text}");
        }
        assert_eq!(c.dropped(), 12);
        assert_eq!(c.passed(), 9);
        assert_eq!(c.known_client_passed(), 5);
    }

    #[test]
    fn modes_display_plainly() {
        assert_eq!(AttachedMode::Generic.to_string(), "generic (skb)");
        assert_eq!(AttachedMode::Native.to_string(), "native (driver)");
    }
}
