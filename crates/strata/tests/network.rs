//! Container networks for real, through the CNI plugins of containernetworking-plugins:
//! two containers on a user-defined bridge network talk by name, a published port
//! answers on the host's 127.0.0.1, `--network none` has only lo, and what a container
//! had (namespace, address, iptables rules, hosts entries) goes with it on stop, rm and
//! `check` after a killed run. Each test makes its own networks (a subnet no route of
//! the host's uses) in its own store; only what a test made is removed.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// Removes the test's containers, then its networks, whatever happens.
struct Cleanup<'a> {
    root: &'a Path,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = go(self.root, &["rm", "-f", c]);
        }
        for n in &self.networks {
            let _ = go(self.root, &["network", "rm", n]);
        }
    }
}

/// The CNI plugins are needed (scripts/deps installs them); without them, outside CI,
/// the test is skipped.
fn plugins_present() -> bool {
    let there = Path::new("/usr/lib/cni/bridge").exists() || Path::new("/opt/cni/bin/bridge").exists();
    if !there {
        assert!(std::env::var_os("CI").is_none(), "CNI plugins missing: run scripts/deps");
        eprintln!("skipped: CNI plugins not installed");
    }
    there
}

/// The test's store with the app image, or `None` to skip (no CNI plugins, or no image).
fn net_store(s: &Scratch) -> Option<PathBuf> {
    if plugins_present() { store_with_app(s) } else { None }
}

/// `network create` on a random 10.89.N.0/24 that no route of the host's and no
/// network of a concurrent run uses (a clash is refused: another N is tried).
fn create_network(root: &Path, name: &str) -> String {
    for _ in 0..50 {
        let n = 100 + (rand_u32() % 150);
        let subnet = format!("10.89.{n}.0/24");
        let o = go(root, &["network", "create", "--subnet", &subnet, name]);
        if o.code == 0 {
            return subnet;
        }
        assert!(o.stderr.contains("overlaps"), "{}", o.stderr);
    }
    panic!("no free subnet found");
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    u32::from_le_bytes(b)
}

/// A port of the host's loopback that is free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run_d(root: &Path, args: &[&str]) -> String {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    let o = go(root, &all);
    assert_eq!(o.code, 0, "{}", o.stderr);
    o.stdout.trim().to_string()
}

fn nat_rules() -> String {
    sh(std::process::Command::new("iptables").args(["-t", "nat", "-S"]))
}

fn filter_rules() -> String {
    sh(std::process::Command::new("iptables").args(["-S"]))
}

fn hosts_of(root: &Path, id: &str) -> String {
    read(root.join("containers").join(id).join("hosts"))
}

/// The lease files of a network of the store (file name: the address).
fn leases(root: &Path, network: &str) -> Vec<String> {
    let dir: PathBuf = root.join("networks").join("leases").join(network);
    names(&dir).into_iter().filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok()).collect()
}

/// A busybox TCP server answering `reply` to each connection on `port`, for ever.
fn server(port: u16, reply: &str) -> String {
    format!("while true; do echo {reply} | nc -l -p {port}; done")
}

/// Reads what a TCP server at `addr` says, retrying (generously) while it starts.
fn tcp_read(addr: &str) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            if !text.is_empty() {
                return text;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "nothing answered on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_containers_on_one_network_talk_by_name() {
    let s = Scratch::new();
    let Some(root) = net_store(&s) else { return };
    let _c = Cleanup { root: &root, containers: vec!["srv".into(), "cli".into()], networks: vec!["talk".into()] };
    let subnet = create_network(&root, "talk");
    let prefix = subnet.trim_end_matches("0/24");
    let srv = run_d(&root, &["--name", "srv", "--network", "talk", "app", "sh", "-c", &server(7000, "pong")]);
    // The client finds the server by name (its /etc/hosts) and talks to it over TCP;
    // its loop tries while the server starts listening.
    let o = go(
        &root,
        &[
            "run",
            "--rm",
            "--name",
            "cli",
            "--network",
            "talk",
            "app",
            "sh",
            "-c",
            "cat /etc/hosts; for i in $(seq 50); do r=$(echo ping | nc -w 2 srv 7000) && [ -n \"$r\" ] && break; \
             sleep 0.2; done; echo \"got $r\"; cat /etc/hosts",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("got pong"), "{}", o.stdout);
    let srv_line = o.stdout.lines().find(|l| l.contains("srv")).unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(srv_line.starts_with(prefix), "srv's address is on {subnet}: {srv_line}");
    // While the client ran, the server's hosts file listed it; once gone, no longer.
    let hosts = hosts_of(&root, &srv);
    assert!(!hosts.contains("cli"), "{hosts}");
    assert!(hosts.lines().any(|l| l.starts_with(prefix) && l.contains(&srv[..12])), "{hosts}");
    let inspect: serde_json::Value = serde_json::from_str(&sh(st(&root).args(["network", "inspect", "talk"]))).unwrap();
    assert_eq!(inspect[0]["IPAM"]["Config"][0]["Subnet"], subnet.as_str());
    let attached = inspect[0]["Containers"].as_object().unwrap();
    assert_eq!(attached.keys().collect::<Vec<_>>(), [&srv], "{inspect}");
    // A container started later is written into the server's hosts file.
    let cli2 = run_d(&root, &["--name", "cli2", "--network", "talk", "app", "sleep", "60"]);
    let _c2 = Cleanup { root: &root, containers: vec![cli2.clone()], networks: vec![] };
    assert!(hosts_of(&root, &srv).contains("cli2"), "{}", hosts_of(&root, &srv));
    let o = go(&root, &["exec", "cli2", "sh", "-c", "echo x | nc -w 5 srv 7000"]);
    assert_eq!((o.code, o.stdout.trim()), (0, "pong"), "{}", o.stderr);
    sh(st(&root).args(["stop", "-t", "1", "cli2"]));
    assert!(!hosts_of(&root, &srv).contains("cli2"), "{}", hosts_of(&root, &srv));
}

#[test]
fn a_published_port_answers_on_the_hosts_loopback() {
    let s = Scratch::new();
    let Some(root) = net_store(&s) else { return };
    let _c = Cleanup { root: &root, containers: vec!["web".into(), "web2".into()], networks: vec!["pub".into()] };
    create_network(&root, "pub");
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:8080");
    run_d(&root, &["--name", "web", "--network", "pub", "-p", &spec, "app", "sh", "-c", &server(8080, "hello-web")]);
    assert_eq!(tcp_read(&format!("127.0.0.1:{port}")).trim(), "hello-web");
    assert_eq!(sh(st(&root).args(["port", "web"])).trim(), format!("8080/tcp -> 127.0.0.1:{port}"));
    let ps = sh(st(&root).arg("ps"));
    assert!(ps.contains(&format!("127.0.0.1:{port}->8080/tcp")), "{ps}");
    let all = ps_json(&root);
    let web = all.as_array().unwrap().iter().find(|c| c["Names"] == "web").unwrap();
    assert_eq!(web["Ports"], format!("127.0.0.1:{port}->8080/tcp").as_str());
    // The host port is taken while the container runs: another container asking for it
    // is refused with Docker's words, and so is a host process.
    let o = go(&root, &["run", "-d", "--name", "web2", "-p", &spec, "app", "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(o.stderr.contains(&format!("Bind for 127.0.0.1:{port} failed: port is already allocated")), "{}", o.stderr);
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err(), "the port is reserved");
    sh(st(&root).args(["rm", "-f", "web2"]));
    // A port a host process listens on is refused too.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let o = go(&root, &["run", "--rm", "-p", &format!("{busy_port}:80"), "app", "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(o.stderr.contains("port is already allocated"), "{}", o.stderr);
    drop(busy);
}

#[test]
fn publish_all_maps_the_images_exposed_ports() {
    let s = Scratch::new();
    let Some(root) = net_store(&s) else { return };
    let ctx = s.mkdir("ctx");
    std::fs::write(ctx.join("Dockerfile"), "FROM app\nEXPOSE 8080/tcp\n").unwrap();
    sh(st(&root).args(["build", "-t", "exposed"]).arg(&ctx));
    let _c = Cleanup { root: &root, containers: vec!["px".into()], networks: vec![] };
    run_d(&root, &["--name", "px", "-P", "exposed", "sh", "-c", &server(8080, "from-px")]);
    let line = sh(st(&root).args(["port", "px", "8080/tcp"]));
    let host_port: u16 = line.trim().rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(host_port > 0, "{line}");
    assert_eq!(tcp_read(&format!("127.0.0.1:{host_port}")).trim(), "from-px");
}

#[test]
fn network_none_has_only_lo_and_bridge_has_eth0() {
    let s = Scratch::new();
    let Some(root) = net_store(&s) else { return };
    let ifaces = "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' ' | sort | tr '\\n' ' '";
    let o = go(&root, &["run", "--rm", "--network", "none", "app", "sh", "-c", ifaces]);
    assert_eq!((o.code, o.stdout.trim()), (0, "lo"), "{}", o.stderr);
    let o = go(&root, &["run", "--rm", "app", "sh", "-c", &format!("{ifaces}; ip -4 route | grep default")]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with("eth0 lo"), "the default network is the bridge: {}", o.stdout);
    assert!(o.stdout.contains("default via 10.87.0.1"), "{}", o.stdout);
    // --dns and --add-host; without --dns, the host's resolvers less loopback ones.
    let o = go(
        &root,
        &[
            "run",
            "--rm",
            "--dns",
            "192.0.2.53",
            "--add-host",
            "db.example:192.0.2.7",
            "app",
            "cat",
            "/etc/resolv.conf",
            "/etc/hosts",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("nameserver 192.0.2.53\n"), "{}", o.stdout);
    assert!(o.stdout.contains("192.0.2.7\tdb.example\n"), "{}", o.stdout);
    let o = go(&root, &["run", "--rm", "app", "cat", "/etc/resolv.conf"]);
    assert!(o.stdout.contains("nameserver "), "{}", o.stdout);
    assert!(!o.stdout.contains("nameserver 127.") && !o.stdout.contains("nameserver ::1"), "{}", o.stdout);
    // Bad input.
    let o = go(&root, &["run", "--rm", "--network", "nosuchnet", "app", "true"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("network nosuchnet not found"), "{}", o.stderr);
    let o = go(&root, &["run", "--rm", "-p", "80:99999", "app", "true"]);
    assert!(o.code != 0 && o.stderr.contains("invalid publish spec"), "{}", o.stderr);
    let o = go(&root, &["run", "--rm", "--add-host", "nocolon", "app", "true"]);
    assert!(o.code != 0 && o.stderr.contains("add-host"), "{}", o.stderr);
}

#[test]
fn rm_and_network_rm_clean_what_they_made() {
    let s = Scratch::new();
    let Some(root) = net_store(&s) else { return };
    let _c = Cleanup { root: &root, containers: vec!["held".into()], networks: vec!["gone".into()] };
    let subnet = create_network(&root, "gone");
    // The same subnet again, or one inside it, is refused.
    let inner = subnet.replace(".0/24", ".0/25");
    let o = go(&root, &["network", "create", "--subnet", &inner, "again"]);
    assert!(o.code != 0 && o.stderr.contains("overlaps"), "{}", o.stderr);
    let o = go(&root, &["network", "create", "--subnet", "10.89.1.0/24", "gone"]);
    assert!(o.code != 0 && o.stderr.contains("already exists"), "{}", o.stderr);
    let port = free_port();
    let id = run_d(&root, &["--name", "held", "--network", "gone", "-p", &format!("{port}:80"), "app", "sleep", "300"]);
    let netns = root.join("netns").join(&id);
    assert!(netns.exists());
    assert!(nat_rules().contains(&id), "the bridge's masquerade and portmap rules name the container");
    assert!(filter_rules().contains(&leases(&root, "gone")[0]), "the firewall plugin's rules");
    assert_eq!(leases(&root, "gone").len(), 1);
    let bridge = serde_json::from_str::<serde_json::Value>(&sh(st(&root).args(["network", "inspect", "gone"])))
        .unwrap()[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(Path::new("/sys/class/net").join(&bridge).exists());
    // In use: refused.
    let o = go(&root, &["network", "rm", "gone"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("has active endpoints") && o.stderr.contains("held"), "{}", o.stderr);
    let o = go(&root, &["network", "rm", "bridge"]);
    assert!(o.code != 0 && o.stderr.contains("pre-defined"), "{}", o.stderr);
    sh(st(&root).args(["rm", "-f", "held"]));
    assert!(!netns.exists(), "the namespace file is removed");
    assert!(!nat_rules().contains(&id), "no rule of the container is left: {}", nat_rules());
    assert!(leases(&root, "gone").is_empty(), "the address is released");
    // No longer in use: removed, with the bridge the plugin made for it.
    sh(st(&root).args(["network", "rm", "gone"]));
    assert!(!Path::new("/sys/class/net").join(&bridge).exists(), "bridge {bridge} removed");
    let o = go(&root, &["network", "inspect", "gone"]);
    assert!(o.code != 0 && o.stderr.contains("network gone not found"), "{}", o.stderr);
}

#[test]
fn check_releases_the_network_of_a_killed_run() {
    let s = Scratch::new();
    let Some(root) = net_store(&s) else { return };
    let _c = Cleanup { root: &root, containers: vec!["victim".into()], networks: vec!["crash".into()] };
    create_network(&root, "crash");
    let port = free_port();
    let id =
        run_d(&root, &["--name", "victim", "--network", "crash", "-p", &format!("{port}:80"), "app", "sleep", "300"]);
    let rec: serde_json::Value =
        serde_json::from_str(&read(root.join("containers").join(&id).join("config.json"))).unwrap();
    let (monitor, pid) = (rec["state"]["monitor_pid"].as_i64().unwrap(), rec["state"]["pid"].as_i64().unwrap());
    // Its monitor, then the container, killed: nobody is left to release anything.
    // SAFETY: kill(2) of processes this test started.
    unsafe { libc::kill(monitor as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(root.join("netns").join(&id).exists());
    assert_eq!(leases(&root, "crash").len(), 1);
    assert!(nat_rules().contains(&id));
    let o = go(&root, &["check"]);
    assert!(o.stdout.contains("released the network of container victim"), "{}", o.stdout);
    assert!(!root.join("netns").join(&id).exists());
    assert!(leases(&root, "crash").is_empty());
    assert!(!nat_rules().contains(&id), "{}", nat_rules());
    // A second check finds nothing more.
    let o = go(&root, &["check"]);
    assert!(o.stdout.contains("is consistent"), "{}", o.stdout);
    // And the host port is free again.
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());
}
