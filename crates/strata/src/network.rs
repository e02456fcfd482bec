//! Container networks: `--network none|host|bridge|NAME`, `-p`/`-P`, `--dns`,
//! `--add-host`, and the `network` and `port` commands.
//!
//! A container on a bridge network (the default `bridge`, or one made with `network
//! create`) gets a persistent network namespace, an nsfs file bound at
//! `ROOT/netns/ID`, made before it starts; the standard CNI plugins configure it
//! (`loopback` for `lo`; `bridge` with `host-local` addresses, `portmap` for published
//! ports, `firewall`), and the runtime joins it. What the plugins did is kept in the
//! container's `network.json` (the list run and its result) so that `DEL` undoes it when
//! the container stops, is removed, or, after a crash, at `strata check`.
//!
//! Names: each container's `/etc/hosts` (a file of its directory, bound over the
//! image's) lists its own address and, on a user-defined network, those of the other
//! containers attached to it; it is rewritten in place (the bind keeps its inode) when
//! a container joins or leaves.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_store::Store;
use strata_store::container::{self, Container, Networking};

use crate::cni;
use crate::ui::table;

/// The default network, as Docker's `docker0`: one bridge for the whole machine, its
/// addresses leased under /run (they die with the namespaces at a reboot).
const DEFAULT_NAME: &str = "bridge";
const DEFAULT_DEVICE: &str = "strata0";
const DEFAULT_SUBNET: &str = "10.87.0.0/16";
const DEFAULT_LEASES: &str = "/run/strata/cni";
/// Where `network create` picks a subnet when none is given: 10.89.N.0/24.
const AUTO_PREFIX: [u8; 2] = [10, 89];
/// Docker's resolvers when the host has only loopback ones.
const PUBLIC_DNS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The network options of `create` and `run`.
#[derive(clap::Args, Debug)]
pub struct NetArgs {
    /// Connect the container to a network: bridge (default), none (only lo), host, or a
    /// network made with `network create`
    #[arg(long = "network", visible_alias = "net", default_value = DEFAULT_NAME)]
    pub network: String,
    /// Publish a container's port on the host: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]
    #[arg(short = 'p', long = "publish", value_name = "[IP:][HOSTPORT:]PORT[/PROTO]")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes, on random host ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// A DNS server for the container's /etc/resolv.conf (instead of the host's)
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Add a line to the container's /etc/hosts: NAME:IP
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
}

impl NetArgs {
    /// The options checked, as the container's record keeps them.
    pub fn record(&self, store: &Store) -> Result<Networking> {
        if !matches!(self.network.as_str(), "none" | "host") {
            load(store, &self.network)?;
        }
        for p in &self.publish {
            PortSpec::parse(p)?;
        }
        if self.network == "host" && (!self.publish.is_empty() || self.publish_all) {
            tracing::warn!("published ports are discarded when using host network mode");
        }
        if self.network == "none" && (!self.publish.is_empty() || self.publish_all) {
            bail!("conflicting options: port publishing and the container type network mode (none)");
        }
        for d in &self.dns {
            d.parse::<std::net::IpAddr>().map_err(|_| anyhow!("{d} is not an ip address (--dns)"))?;
        }
        for h in &self.add_hosts {
            parse_add_host(h)?;
        }
        Ok(Networking {
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            dns: self.dns.clone(),
            add_hosts: self.add_hosts.clone(),
        })
    }
}

/// `NAME:IP` (IPv6 addresses have colons: split at the first).
fn parse_add_host(s: &str) -> Result<(String, std::net::IpAddr)> {
    let (name, ip) = s.split_once(':').ok_or_else(|| anyhow!("bad format for add-host: {s:?} (NAME:IP)"))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ip = ip.parse().map_err(|_| anyhow!("invalid IP address in add-host: {ip:?}"))?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("bad format for add-host: {s:?} (NAME:IP)");
    }
    Ok((name.to_string(), ip))
}

// ------------------------------------------------------------------ ports

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A `-p` value: host address and port (0: a random one) for a container port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PortSpec {
    host_ip: Option<Ipv4Addr>,
    host_port: u16,
    container_port: u16,
    proto: Proto,
}

impl PortSpec {
    fn parse(s: &str) -> Result<PortSpec> {
        let bad = || anyhow!("invalid publish spec {s:?}: expected [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]");
        let (rest, proto) = match s.rsplit_once('/') {
            Some((r, "tcp")) => (r, Proto::Tcp),
            Some((r, "udp")) => (r, Proto::Udp),
            Some((_, p)) => bail!("invalid proto {p:?} in publish spec {s:?} (tcp or udp)"),
            None => (s, Proto::Tcp),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, ctr) = match parts.as_slice() {
            [c] => ("", "", *c),
            [h, c] => ("", *h, *c),
            [i, h, c] => (*i, *h, *c),
            _ => return Err(bad()),
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|n| *n > 0);
        let container_port = port(ctr).ok_or_else(bad)?;
        let host_port = if host.is_empty() { 0 } else { port(host).ok_or_else(bad)? };
        let host_ip = if ip.is_empty() {
            None
        } else {
            Some(ip.parse::<Ipv4Addr>().map_err(|_| anyhow!("invalid host IP {ip:?} in publish spec {s:?}"))?)
        };
        Ok(PortSpec { host_ip, host_port, container_port, proto })
    }
}

/// A published port as set up: `portmap`'s `portMappings` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    pub protocol: Proto,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = if self.host_ip.is_empty() { "0.0.0.0" } else { &self.host_ip };
        write!(f, "{ip}:{}->{}/{}", self.host_port, self.container_port, self.protocol)
    }
}

/// Binds the host port (not listening: connections are DNATed to the container before
/// they could reach it), so that it is refused to others while the container runs, as
/// Docker's proxy holds it; port 0 gets a free one. The socket is the reservation.
fn reserve(ip: Option<Ipv4Addr>, port: u16, proto: Proto) -> Result<(OwnedFd, u16)> {
    use rustix::net::{AddressFamily, SocketType, ipproto};
    let (kind, p) = match proto {
        Proto::Tcp => (SocketType::STREAM, ipproto::TCP),
        Proto::Udp => (SocketType::DGRAM, ipproto::UDP),
    };
    let ip = ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let fd = rustix::net::socket_with(AddressFamily::INET, kind, rustix::net::SocketFlags::CLOEXEC, Some(p))
        .context("socket")?;
    let addr = std::net::SocketAddrV4::new(ip, port);
    match rustix::net::bind(&fd, &addr) {
        Ok(()) => {}
        Err(rustix::io::Errno::ADDRINUSE) => bail!("Bind for {ip}:{port} failed: port is already allocated"),
        Err(e) => bail!("Bind for {ip}:{port} failed: {e}"),
    }
    let bound = match rustix::net::getsockname(&fd) {
        Ok(a) => std::net::SocketAddr::try_from(a).map(|a| a.port()).unwrap_or(port),
        Err(_) => port,
    };
    Ok((fd, bound))
}

/// The image's `EXPOSE`d ports (`80/tcp`, `53/udp`, `8080`).
fn exposed_ports(store: &Store, c: &Container) -> Vec<(u16, Proto)> {
    let Ok(image) = store.image(&c.image) else { return Vec::new() };
    let Some(ports) = image.config.get("config").and_then(|c| c.get("ExposedPorts")).and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out: Vec<(u16, Proto)> = ports
        .keys()
        .filter_map(|k| {
            let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            let proto = match proto {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                _ => return None,
            };
            Some((port.parse().ok()?, proto))
        })
        .collect();
    out.sort_by_key(|(p, proto)| (*p, *proto as u8));
    out
}

// ------------------------------------------------------------------ subnets

/// An IPv4 subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Subnet {
    addr: u32,
    prefix: u8,
}

impl Subnet {
    fn parse(s: &str) -> Result<Subnet> {
        let bad = || anyhow!("invalid subnet {s:?}: expected an IPv4 CIDR such as 10.90.0.0/24");
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (8..=30).contains(p)).ok_or_else(bad)?;
        let addr = u32::from(ip);
        if addr & !mask(prefix) != 0 {
            bail!("invalid subnet {s}: the address has bits set beyond the prefix length");
        }
        Ok(Subnet { addr, prefix })
    }

    fn overlaps(&self, other: &Subnet) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        self.addr & m == other.addr & m
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr + 1)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
}

/// The host's IPv4 routes (but default routes) and their devices, from /proc/net/route.
fn host_routes() -> Vec<(Subnet, String)> {
    let text = fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let m = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            (m != 0).then(|| (Subnet { addr: dest & m, prefix: m.count_ones() as u8 }, f[0].to_string()))
        })
        .collect()
}

// ------------------------------------------------------------------ networks

/// A bridge network: `ROOT/networks/NAME.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    pub id: String,
    pub created: String,
    pub subnet: String,
    pub gateway: String,
    /// The host's bridge device.
    pub bridge: String,
}

fn networks_dir(store: &Store) -> PathBuf {
    store.root().join("networks")
}

fn record_path(store: &Store, name: &str) -> PathBuf {
    networks_dir(store).join(format!("{name}.json"))
}

fn leases_dir(store: &Store, net: &NetworkRecord) -> PathBuf {
    if net.name == DEFAULT_NAME { PathBuf::from(DEFAULT_LEASES) } else { networks_dir(store).join("leases") }
}

pub fn netns_path(store: &Store, id: &str) -> PathBuf {
    store.root().join("netns").join(id)
}

fn attachment_path(store: &Store, id: &str) -> PathBuf {
    store.containers_dir().join(id).join("network.json")
}

/// A directory of the store's, root's only.
fn private_dir(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(p).with_context(|| format!("{}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o700)).with_context(|| format!("{}", p.display()))
}

/// The networks' lock: attaching, detaching, creating and removing networks, and the
/// hosts files, one at a time.
struct NetLock(#[allow(dead_code)] fs::File);

fn lock(store: &Store) -> Result<NetLock> {
    let dir = networks_dir(store);
    private_dir(&dir)?;
    let path = dir.join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}", path.display()))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(NetLock(f))
}

fn default_network() -> NetworkRecord {
    let subnet = Subnet::parse(DEFAULT_SUBNET).unwrap_or(Subnet { addr: 0x0a57_0000, prefix: 16 });
    NetworkRecord {
        name: DEFAULT_NAME.into(),
        id: builtin_id(DEFAULT_NAME),
        created: String::new(),
        subnet: subnet.to_string(),
        gateway: subnet.gateway().to_string(),
        bridge: DEFAULT_DEVICE.into(),
    }
}

/// The fixed ID of a pre-defined network: the SHA-256 of its name.
fn builtin_id(name: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(format!("strata network {name}")).iter().map(|b| format!("{b:02x}")).collect()
}

/// A bridge network by name (or ID prefix): `bridge` or one of the store's.
pub fn load(store: &Store, name: &str) -> Result<NetworkRecord> {
    if name == DEFAULT_NAME {
        return Ok(default_network());
    }
    let all = list(store)?;
    if let Some(n) = all.iter().find(|n| n.name == name) {
        return Ok(n.clone());
    }
    let by_id: Vec<&NetworkRecord> = all.iter().filter(|n| name.len() >= 4 && n.id.starts_with(name)).collect();
    match by_id.as_slice() {
        [n] => Ok((*n).clone()),
        _ => bail!("network {name} not found"),
    }
}

/// The store's own networks (not `bridge`), by name.
fn list(store: &Store) -> Result<Vec<NetworkRecord>> {
    let dir = networks_dir(store);
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(&dir) else { return Ok(out) };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let text = fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?;
            out.push(serde_json::from_str(&text).with_context(|| format!("{}: corrupt network record", p.display()))?);
        }
    }
    out.sort_by(|a: &NetworkRecord, b: &NetworkRecord| a.name.cmp(&b.name));
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The CNI configuration list of a network.
fn conflist(store: &Store, net: &NetworkRecord) -> Value {
    json!({
        "cniVersion": cni::VERSION,
        "name": net.name,
        "plugins": [
            {"type": "bridge", "bridge": net.bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": net.subnet, "gateway": net.gateway}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": leases_dir(store, net)}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "firewall", "backend": "iptables"}
        ]
    })
}

fn loopback_conf() -> Value {
    json!({"cniVersion": cni::VERSION, "name": "lo", "plugins": [{"type": "loopback"}]})
}

// ------------------------------------------------------------------ namespaces

/// Makes a network namespace and binds it at `path` (as `ip netns add`): a thread
/// unshares its own network namespace, binds it, and ends; the bind keeps it.
fn create_netns(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let target = path.to_path_buf();
    let res = std::thread::spawn(move || -> rustix::io::Result<()> {
        // SAFETY: only this thread's network namespace changes (no file table or fs
        // state is unshared); the thread ends right after.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }?;
        rustix::mount::mount_bind("/proc/thread-self/ns/net", &target)
    })
    .join()
    .map_err(|_| anyhow!("the thread making the network namespace panicked"))?;
    if let Err(e) = res {
        let _ = fs::remove_file(path);
        bail!("making the network namespace {}: {e}", path.display());
    }
    Ok(())
}

/// Unbinds and removes a namespace file (whatever is left of it).
fn remove_netns(path: &Path) {
    // EINVAL: not mounted (any more); ENOENT: gone.
    let _ = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH);
    if let Err(e) = fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
}

fn is_netns(path: &Path) -> bool {
    // An nsfs file bound there (a plain file is what is left after a reboot).
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as u64 == 0x6e73_6673)
}

// ------------------------------------------------------------------ attachments

/// What was set up for a container: kept in `containers/ID/network.json` before the
/// first plugin runs, completed after.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub netns: PathBuf,
    /// The configuration list run, and the values of its capabilities.
    pub conflist: Value,
    pub runtime: Value,
    pub ports: Vec<PortMapping>,
    /// The result of `ADD` (none while it runs, or if it failed).
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub ip: Option<String>,
    /// The process that set it up and tears it down (a monitor or `strata run`).
    pub owner_pid: i32,
    pub owner_start: u64,
}

impl Attachment {
    fn owner_alive(&self) -> bool {
        self.owner_pid > 0 && container::alive_since(self.owner_pid, self.owner_start)
    }
}

fn read_attachment(store: &Store, id: &str) -> Option<Attachment> {
    let text = fs::read_to_string(attachment_path(store, id)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The attachment of `c` while it runs (what it had is stale once it ended).
fn running_attachment(store: &Store, c: &Container) -> Option<Attachment> {
    if c.is_running() { read_attachment(store, &c.id) } else { None }
}

fn write_attachment(store: &Store, id: &str, a: &Attachment) -> Result<()> {
    write_json(&attachment_path(store, id), a)
}

/// Writes a record whole or not at all (a temporary file renamed over it; removed when
/// it could not be written). Under the networks' lock.
fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let res = fs::write(&tmp, serde_json::to_vec_pretty(value)?).with_context(|| format!("{}", tmp.display()));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res?;
    fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))
}

/// The container's IPv4 address from an `ADD` result.
fn result_ip(result: &Value) -> Option<String> {
    result.get("ips")?.as_array()?.iter().find_map(|ip| {
        let a = ip.get("address")?.as_str()?;
        let (addr, _) = a.split_once('/')?;
        addr.parse::<Ipv4Addr>().ok().map(|_| addr.to_string())
    })
}

/// The network set up for a running container; dropping it tears it down.
pub struct Session<'a> {
    store: &'a Store,
    id: String,
    /// The published ports' reservations.
    _ports: Vec<OwnedFd>,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Err(e) = teardown(self.store, &self.id) {
            tracing::warn!("releasing the network of container {}: {e:#}", self.id);
        }
    }
}

/// Whether the container's network is a CNI bridge network.
pub fn is_bridge(network: &str) -> bool {
    !matches!(network, "none" | "host" | "")
}

/// Prepares the container's network before it starts: its `/etc/hosts` and
/// `/etc/resolv.conf`; on a bridge network, its namespace, address and published ports
/// (the runtime joins the namespace at [`netns_path`]).
pub fn setup<'a>(store: &'a Store, c: &Container) -> Result<Option<Session<'a>>> {
    let opts = &c.config.networking;
    if !is_bridge(&c.config.network) {
        write_resolv_conf(store, c)?;
        write_hosts_file(store, c, None, &[])?;
        return Ok(None);
    }
    // Under the lock: a `network rm` meanwhile either sees this container or has run.
    let _lock = lock(store)?;
    let net = load(store, &c.config.network)?;
    // Whatever a killed run left is released first.
    if attachment_path(store, &c.id).exists() || netns_path(store, &c.id).exists() {
        teardown_locked(store, &c.id)?;
    }
    let mut reservations = Vec::new();
    let mut ports = Vec::new();
    let mut wanted: Vec<PortSpec> = opts.publish.iter().map(|p| PortSpec::parse(p)).collect::<Result<_>>()?;
    if opts.publish_all {
        for (port, proto) in exposed_ports(store, c) {
            if !wanted.iter().any(|w| w.container_port == port && w.proto == proto) {
                wanted.push(PortSpec { host_ip: None, host_port: 0, container_port: port, proto });
            }
        }
    }
    for w in &wanted {
        let (fd, host_port) = reserve(w.host_ip, w.host_port, w.proto)
            .with_context(|| format!("publishing port {}", w.container_port))?;
        reservations.push(fd);
        ports.push(PortMapping {
            host_ip: w.host_ip.map(|i| i.to_string()).unwrap_or_default(),
            host_port,
            container_port: w.container_port,
            protocol: w.proto,
        });
    }
    let netns = netns_path(store, &c.id);
    let me = std::process::id() as i32;
    let mut a = Attachment {
        network: net.name.clone(),
        netns: netns.clone(),
        conflist: conflist(store, &net),
        runtime: json!({"portMappings": ports}),
        ports,
        result: None,
        ip: None,
        owner_pid: me,
        owner_start: container::pid_start_time(me).unwrap_or(0),
    };
    // Recorded before anything exists, so that a crash from here on is cleaned up.
    write_attachment(store, &c.id, &a)?;
    let session = Session { store, id: c.id.clone(), _ports: reservations };
    create_netns(&netns)?;
    let lo = cni::Target { container_id: &c.id, netns: &netns, ifname: "lo" };
    cni::add(&loopback_conf(), &json!({}), &lo)?;
    let eth = cni::Target { container_id: &c.id, netns: &netns, ifname: "eth0" };
    let result = cni::add(&a.conflist, &a.runtime, &eth)
        .with_context(|| format!("connecting container {} to network {}", c.name, net.name))?;
    a.ip = result_ip(&result);
    a.result = Some(result);
    write_attachment(store, &c.id, &a)?;
    write_resolv_conf(store, c)?;
    refresh_hosts(store, &net.name)?;
    Ok(Some(session))
}

/// Releases what [`setup`] made for container `id` (CNI `DEL`, namespace, address),
/// whatever is left of it; the other containers' hosts files then forget it.
pub fn teardown(store: &Store, id: &str) -> Result<()> {
    if !attachment_path(store, id).exists() && !netns_path(store, id).exists() {
        return Ok(());
    }
    let _lock = lock(store)?;
    teardown_locked(store, id)
}

fn teardown_locked(store: &Store, id: &str) -> Result<()> {
    let netns = netns_path(store, id);
    let mut res = Ok(());
    let a = read_attachment(store, id);
    if let Some(a) = &a {
        // The plugins tolerate a namespace that is gone; they must be told its path
        // only while it is one.
        let ns: &Path = if is_netns(&netns) { &netns } else { Path::new("") };
        let eth = cni::Target { container_id: id, netns: ns, ifname: "eth0" };
        res = cni::del(&a.conflist, &a.runtime, a.result.as_ref(), &eth);
        let lo = cni::Target { container_id: id, netns: ns, ifname: "lo" };
        let _ = cni::del(&loopback_conf(), &json!({}), None, &lo);
    }
    remove_netns(&netns);
    if res.is_ok() {
        let path = attachment_path(store, id);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(e).with_context(|| format!("{}", path.display()));
        }
    }
    if let Some(a) = a {
        refresh_hosts(store, &a.network)?;
    }
    res
}

// ------------------------------------------------------------------ /etc files

/// Rewrites a file bound into a container in place (a new inode would not be seen).
fn rewrite(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f =
        fs::OpenOptions::new().write(true).truncate(true).open(path).with_context(|| format!("{}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("{}", path.display()))
}

/// The host's resolvers, search domains and options, without loopback resolvers
/// (unreachable from the container's namespace); Docker's public ones when nothing is
/// left. `--dns` replaces the resolvers.
pub fn resolv_conf(host: &str, dns: &[String]) -> String {
    let mut servers = Vec::new();
    let mut other = Vec::new();
    for line in host.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["nameserver", ip, ..] => {
                let loopback = ip.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
                if !loopback {
                    servers.push(ip.to_string());
                }
            }
            [kw, ..] if ["search", "domain", "options"].contains(kw) => other.push(line.trim().to_string()),
            _ => {}
        }
    }
    if !dns.is_empty() {
        servers = dns.to_vec();
    } else if servers.is_empty() {
        servers = PUBLIC_DNS.iter().map(|s| s.to_string()).collect();
    }
    let mut out: String = other.iter().map(|l| format!("{l}\n")).collect();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    out
}

fn host_resolv_conf() -> String {
    let text = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    // systemd-resolved's stub (127.0.0.53) stands for the resolvers it uses.
    let only_loopback = !text.lines().any(|l| {
        l.split_whitespace()
            .collect::<Vec<_>>()
            .get(1)
            .is_some_and(|ip| l.trim_start().starts_with("nameserver") && !ip.starts_with("127.") && *ip != "::1")
    });
    if only_loopback && let Ok(real) = fs::read_to_string("/run/systemd/resolve/resolv.conf") {
        return real;
    }
    text
}

fn write_resolv_conf(store: &Store, c: &Container) -> Result<()> {
    let text = match c.config.network.as_str() {
        "none" => return Ok(()),
        "host" if c.config.networking.dns.is_empty() => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        _ => resolv_conf(&host_resolv_conf(), &c.config.networking.dns),
    };
    rewrite(&c.dir(store).join("resolv.conf"), &text)
}

/// Writes a container's /etc/hosts: localhost, its own name, its network's peers and
/// its `--add-host` lines.
fn write_hosts_file(store: &Store, c: &Container, ip: Option<&str>, peers: &[(String, String, String)]) -> Result<()> {
    let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let own = if c.config.network == DEFAULT_NAME || !is_bridge(&c.config.network) {
        c.config.hostname.clone()
    } else {
        format!("{} {}", c.config.hostname, c.name)
    };
    text.push_str(&format!("{}\t{own}\n", ip.unwrap_or("127.0.1.1")));
    for (peer_ip, name, hostname) in peers {
        text.push_str(&format!("{peer_ip}\t{name} {hostname}\n"));
    }
    for h in &c.config.networking.add_hosts {
        if let Ok((name, ip)) = parse_add_host(h) {
            text.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    rewrite(&c.dir(store).join("hosts"), &text)
}

/// Rewrites the hosts file of every container attached to `network` (lock held): on a
/// user-defined network each lists the others by name.
fn refresh_hosts(store: &Store, network: &str) -> Result<()> {
    let attached: Vec<(Container, String)> =
        attached(store, network)?.into_iter().filter_map(|(c, a)| Some((c, a.ip?))).collect();
    for (c, ip) in &attached {
        let peers: Vec<(String, String, String)> = if network == DEFAULT_NAME {
            Vec::new()
        } else {
            attached
                .iter()
                .filter(|(o, _)| o.id != c.id)
                .map(|(o, ip)| (ip.clone(), o.name.clone(), o.config.hostname.clone()))
                .collect()
        };
        write_hosts_file(store, c, Some(ip), &peers)?;
    }
    Ok(())
}

// ------------------------------------------------------------------ check

/// For `check`: networks of containers whose run was killed (namespace, address,
/// published ports' rules), namespace files of no container, leases of no container.
pub fn check(store: &Store, repaired: &mut Vec<String>, problems: &mut Vec<String>) -> Result<()> {
    let containers = container::list(store)?;
    let _lock = lock(store)?;
    for c in &containers {
        let Some(a) = read_attachment(store, &c.id) else {
            if netns_path(store, &c.id).exists() && !crate::monitor::live(c) {
                remove_netns(&netns_path(store, &c.id));
                repaired.push(format!("removed the network namespace of container {}, left by a killed run", c.name));
            }
            continue;
        };
        if a.owner_alive() || c.is_running() {
            if let Some(result) = &a.result {
                let eth = cni::Target { container_id: &c.id, netns: &a.netns, ifname: "eth0" };
                if let Err(e) = cni::check(&checkable(&a.conflist, result), &a.runtime, result, &eth) {
                    problems.push(format!("the network of container {} is not as set up: {e:#}", c.name));
                }
            }
            continue;
        }
        match teardown_locked(store, &c.id) {
            Ok(()) => repaired.push(format!(
                "released the network of container {} on {} (namespace, address, ports), left by a killed run",
                c.name, a.network
            )),
            Err(e) => problems.push(format!("cannot release the network of container {}: {e:#}", c.name)),
        }
    }
    // Namespace files of containers that no longer exist.
    let known: Vec<&str> = containers.iter().map(|c| c.id.as_str()).collect();
    let ns_dir = store.root().join("netns");
    for e in fs::read_dir(&ns_dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !known.contains(&name.as_str()) {
            remove_netns(&e.path());
            repaired.push(format!("removed the network namespace {}, of no container", e.path().display()));
        }
    }
    // Addresses leased to containers of this store that are attached to nothing (the
    // default network's leases are the machine's: only this store's are judged).
    let attached: Vec<String> =
        containers.iter().filter(|c| attachment_path(store, &c.id).exists()).map(|c| c.id.clone()).collect();
    let mut nets = list(store)?;
    nets.push(default_network());
    for net in &nets {
        let dir = leases_dir(store, net).join(&net.name);
        let ours_only = net.name != DEFAULT_NAME;
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let fname = e.file_name().to_string_lossy().into_owned();
            if fname.parse::<Ipv4Addr>().is_err() {
                continue; // last_reserved_ip, lock
            }
            let owner = fs::read_to_string(e.path()).unwrap_or_default();
            let owner = owner.lines().next().unwrap_or_default().trim().to_string();
            let leaked = !attached.contains(&owner) && (ours_only || known.contains(&owner.as_str()));
            if leaked && fs::remove_file(e.path()).is_ok() {
                repaired.push(format!("released address {fname} on network {}, leased to no container", net.name));
            }
        }
    }
    Ok(())
}

/// The list to `CHECK`: `portmap` up to 1.1 checks its IPv6 chain even when the
/// container has no IPv6 address (and so no such chain) and always fails there; it is
/// left out of the check of such a container.
fn checkable(list: &Value, result: &Value) -> Value {
    let has_v6 = result.get("ips").and_then(Value::as_array).is_some_and(|ips| {
        ips.iter().any(|ip| ip.get("address").and_then(Value::as_str).is_some_and(|a| a.contains(':')))
    });
    let mut list = list.clone();
    if !has_v6 && let Some(plugins) = list.get_mut("plugins").and_then(Value::as_array_mut) {
        plugins.retain(|p| p.get("type").and_then(Value::as_str) != Some("portmap"));
    }
    list
}

// ------------------------------------------------------------------ commands

/// `network` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a bridge network
    Create {
        /// Driver (only bridge)
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        /// Subnet in CIDR form (default: a free 10.89.N.0/24)
        #[arg(long)]
        subnet: Option<String>,
        name: String,
    },
    /// List networks
    #[command(visible_alias = "list")]
    Ls {
        /// Only print the names
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Remove networks (refused while containers are attached)
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Show networks' configuration and attached containers as JSON
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

pub fn cmd_network(store: &Store, command: NetworkCommand) -> Result<ExitCode> {
    match command {
        NetworkCommand::Create { driver, subnet, name } => {
            if driver != "bridge" {
                bail!("network driver {driver} is not supported (only bridge)");
            }
            let net = create(store, &name, subnet.as_deref())?;
            println!("{}", net.id);
        }
        NetworkCommand::Ls { quiet } => {
            let mut nets = vec![default_network()];
            nets.extend(list(store)?);
            if quiet {
                nets.iter().for_each(|n| println!("{}", n.name));
                ["host", "none"].iter().for_each(|n| println!("{n}"));
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows: Vec<Vec<String>> = nets
                .iter()
                .map(|n| vec![n.id[..12].to_string(), n.name.clone(), "bridge".into(), "local".into()])
                .collect();
            for (name, driver) in [("host", "host"), ("none", "null")] {
                rows.push(vec![builtin_id(name)[..12].to_string(), name.into(), driver.into(), "local".into()]);
            }
            table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows);
        }
        NetworkCommand::Rm { networks } => {
            let mut failed = false;
            for n in &networks {
                match remove(store, n) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("strata: {e:#}");
                        failed = true;
                    }
                }
            }
            return Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS });
        }
        NetworkCommand::Inspect { networks } => {
            let mut out = Vec::new();
            for n in &networks {
                out.push(inspect(store, &load(store, n)?)?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create(store: &Store, name: &str, subnet: Option<&str>) -> Result<NetworkRecord> {
    if !valid_name(name) {
        bail!("invalid network name {name:?}: use letters, digits, '_', '.', '-', starting with a letter or digit");
    }
    if ["bridge", "host", "none", "default"].contains(&name) {
        bail!("{name} is a pre-defined network and cannot be created");
    }
    let _lock = lock(store)?;
    let nets = list(store)?;
    if let Some(n) = nets.iter().find(|n| n.name == name) {
        bail!("network with name {name} already exists (id {})", &n.id[..12]);
    }
    // In use: the store's networks, the default one, the host's routes (but those of the
    // store's own bridges, which are its networks).
    let mut taken: Vec<(Subnet, String)> = nets
        .iter()
        .chain([&default_network()])
        .filter_map(|n| Some((Subnet::parse(&n.subnet).ok()?, format!("network {}", n.name))))
        .collect();
    let ours: Vec<&str> = nets.iter().map(|n| n.bridge.as_str()).chain([DEFAULT_DEVICE]).collect();
    taken.extend(
        host_routes()
            .into_iter()
            .filter(|(_, dev)| !ours.contains(&dev.as_str()))
            .map(|(s, dev)| (s, format!("a route of the host's (dev {dev})"))),
    );
    let subnet = match subnet {
        Some(s) => {
            let s = Subnet::parse(s)?;
            if let Some((t, what)) = taken.iter().find(|(t, _)| t.overlaps(&s)) {
                bail!(
                    "invalid pool request: Pool overlaps with other one on this address space ({s} overlaps {t} of {what})"
                );
            }
            s
        }
        None => (0..=255u8)
            .map(|n| Subnet { addr: u32::from(Ipv4Addr::new(AUTO_PREFIX[0], AUTO_PREFIX[1], n, 0)), prefix: 24 })
            .find(|s| !taken.iter().any(|(t, _)| t.overlaps(s)))
            .ok_or_else(|| anyhow!("could not find an available, non-overlapping IPv4 address pool for the network"))?,
    };
    let id = strata_store::store::random_hex(32);
    let net = NetworkRecord {
        name: name.to_string(),
        bridge: format!("st-{}", &id[..10]),
        id,
        created: strata_store::store::now_rfc3339(),
        subnet: subnet.to_string(),
        gateway: subnet.gateway().to_string(),
    };
    write_json(&record_path(store, name), &net)?;
    Ok(net)
}

/// Containers attached to a network, with their attachments.
fn attached(store: &Store, network: &str) -> Result<Vec<(Container, Attachment)>> {
    Ok(container::list(store)?
        .into_iter()
        .filter_map(|c| {
            let a = read_attachment(store, &c.id)?;
            (a.network == network).then_some((c, a))
        })
        .collect())
}

fn remove(store: &Store, name: &str) -> Result<()> {
    if ["bridge", "host", "none"].contains(&name) {
        bail!("{name} is a pre-defined network and cannot be removed");
    }
    let _lock = lock(store)?;
    let net = load(store, name)?;
    let users = attached(store, &net.name)?;
    if !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|(c, _)| c.name.as_str()).collect();
        bail!(
            "error while removing network: network {} id {} has active endpoints (containers {})",
            net.name,
            &net.id[..12],
            names.join(", ")
        );
    }
    fs::remove_file(record_path(store, &net.name)).with_context(|| format!("removing network {}", net.name))?;
    let leases = leases_dir(store, &net).join(&net.name);
    if leases.exists() {
        let _ = fs::remove_dir_all(&leases);
    }
    // The bridge the plugin made for this network (it leaves it when its last
    // container goes).
    if Path::new("/sys/class/net").join(&net.bridge).exists() {
        let out = std::process::Command::new("ip").args(["link", "delete", &net.bridge, "type", "bridge"]).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => tracing::warn!("removing bridge {}: {}", net.bridge, String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => tracing::warn!("removing bridge {}: ip: {e}", net.bridge),
        }
    }
    Ok(())
}

fn inspect(store: &Store, net: &NetworkRecord) -> Result<Value> {
    let mut containers = serde_json::Map::new();
    for (c, a) in attached(store, &net.name)? {
        let prefix = net.subnet.split_once('/').map_or("", |(_, p)| p);
        containers.insert(
            c.id.clone(),
            json!({"Name": c.name, "IPv4Address": a.ip.map(|ip| format!("{ip}/{prefix}")).unwrap_or_default()}),
        );
    }
    Ok(json!({
        "Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local", "Driver": "bridge",
        "IPAM": {"Driver": "host-local", "Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
        "Options": {"com.docker.network.bridge.name": net.bridge},
        "Containers": containers,
    }))
}

/// `inspect` of a container: its network, address and published ports while it runs.
pub fn inspect_container(store: &Store, c: &Container) -> Value {
    let a = running_attachment(store, c);
    let mut ports = serde_json::Map::new();
    for m in a.iter().flat_map(|a| &a.ports) {
        let ip = if m.host_ip.is_empty() { "0.0.0.0" } else { &m.host_ip };
        let entry = ports.entry(format!("{}/{}", m.container_port, m.protocol)).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({"HostIp": ip, "HostPort": m.host_port.to_string()}));
        }
    }
    let mut networks = serde_json::Map::new();
    if is_bridge(&c.config.network) {
        let net = load(store, &c.config.network).ok();
        networks.insert(
            c.config.network.clone(),
            json!({"NetworkID": net.as_ref().map(|n| n.id.clone()), "Gateway": net.map(|n| n.gateway),
                   "IPAddress": a.as_ref().and_then(|a| a.ip.clone()).unwrap_or_default()}),
        );
    }
    json!({"SandboxKey": a.map(|a| a.netns), "Ports": ports, "Networks": networks})
}

/// The published ports of a container while it runs, as `ps` shows them.
pub fn ports_column(store: &Store, c: &Container) -> String {
    running_attachment(store, c)
        .map(|a| a.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// `port CONTAINER [PORT[/PROTO]]`.
pub fn cmd_port(store: &Store, reference: &str, port: Option<&str>) -> Result<ExitCode> {
    let c = container::find(store, reference)?;
    let a = running_attachment(store, &c);
    let Some(a) = a else { bail!("container {} is not running", c.name) };
    let filter = port.map(|p| {
        let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        (n.to_string(), proto.to_string())
    });
    let mut shown = BTreeMap::new();
    for m in &a.ports {
        if let Some((n, proto)) = &filter
            && (m.container_port.to_string() != *n || m.protocol.to_string() != *proto)
        {
            continue;
        }
        let ip = if m.host_ip.is_empty() { "0.0.0.0" } else { &m.host_ip };
        let line = format!("{}:{}", ip, m.host_port);
        shown.entry(format!("{}/{}", m.container_port, m.protocol)).or_insert_with(Vec::new).push(line);
    }
    if let (Some(p), true) = (port, shown.is_empty()) {
        bail!("no public port '{p}' published for {}", c.name);
    }
    for (ctr, hosts) in shown {
        for h in hosts {
            if filter.is_some() {
                println!("{h}");
            } else {
                println!("{ctr} -> {h}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs() {
        let p = PortSpec::parse("8080:80").expect("valid");
        assert_eq!((p.host_ip, p.host_port, p.container_port, p.proto), (None, 8080, 80, Proto::Tcp));
        let p = PortSpec::parse("127.0.0.1:53:5353/udp").expect("valid");
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.proto),
            (Some(Ipv4Addr::LOCALHOST), 53, 5353, Proto::Udp)
        );
        assert_eq!(PortSpec::parse("80").expect("valid").host_port, 0);
        assert_eq!(PortSpec::parse("127.0.0.1::80").expect("valid").host_port, 0);
        for bad in ["", "x:80", "80:0", "1:2:3:4", "80/sctp", "999999:80", "localhost:1:2"] {
            assert!(PortSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subnets_overlap_by_their_common_prefix() {
        let a = Subnet::parse("10.89.0.0/16").expect("valid");
        let b = Subnet::parse("10.89.3.0/24").expect("valid");
        let c = Subnet::parse("10.90.0.0/24").expect("valid");
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert_eq!(b.gateway(), Ipv4Addr::new(10, 89, 3, 1));
        assert!(Subnet::parse("10.89.3.1/24").is_err());
        assert!(Subnet::parse("10.89.3.0").is_err());
    }

    #[test]
    fn resolv_conf_drops_loopback_resolvers() {
        let host = "# generated\nsearch example.org\nnameserver 127.0.0.53\nnameserver ::1\noptions edns0\n";
        assert_eq!(
            resolv_conf(host, &[]),
            "search example.org\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let host = "nameserver 127.0.0.1\nnameserver 192.0.2.53\n";
        assert_eq!(resolv_conf(host, &[]), "nameserver 192.0.2.53\n");
        assert_eq!(resolv_conf(host, &["1.1.1.1".into()]), "nameserver 1.1.1.1\n");
    }

    #[test]
    fn add_host_values() {
        let (n, ip) = parse_add_host("db:10.0.0.5").expect("valid");
        assert_eq!((n.as_str(), ip.to_string().as_str()), ("db", "10.0.0.5"));
        assert!(parse_add_host("v6:[::1]").is_ok());
        assert!(parse_add_host("db").is_err() && parse_add_host("db:nope").is_err());
    }
}
