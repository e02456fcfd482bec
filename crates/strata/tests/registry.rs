//! Registries through the CLI, against real registries on 127.0.0.1 (distribution 2.8):
//! every fixture format pushed by skopeo pulls as exactly the expected tree; what Strata
//! pushes skopeo and podman read and run; push, rmi, pull keeps the image ID; a second push
//! uploads nothing; Basic auth with htpasswd and login/logout; a Bearer token service;
//! TLS with a test CA; faults injected by a proxy of this file's own (a corrupted byte, a
//! cut body, 500s, a registry that is down, oversized and schema 1 manifests, a redirect
//! loop, a kill -9 mid-pull) give clear errors and leave nothing half-done in the store.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// The fixture app's image ID (its config's digest), whatever format carried it.
const APP_ID: &str = "sha256:88560b81062affcc626e2e38baf550b6507de0bd1bd3c20d0ea7e87046b6a241";

// ---------------------------------------------------------------- registries

/// A registry started by the shared `start-registry`, stopped by its `--stop` on drop.
struct Registry {
    dir: PathBuf,
    addr: String,
    script: PathBuf,
}

impl Registry {
    fn start(s: &Scratch, name: &str) -> Registry {
        let script = fixtures().expect("shared fixtures").join("start-registry");
        let dir = s.path(name);
        let out = sh(Command::new("bash").arg(&script).args(["--background", "0"]).arg(&dir));
        let addr = out.lines().find_map(|l| l.strip_prefix("REGISTRY=")).expect("REGISTRY= line").to_string();
        Registry { dir, addr, script }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(&self.script).arg("--stop").arg(&self.dir).stderr(Stdio::null()).status();
    }
}

/// A registry with a config of the test's own (htpasswd, TLS), killed by pid on drop.
struct OwnRegistry {
    child: Child,
    addr: String,
}

impl OwnRegistry {
    fn start(s: &Scratch, name: &str, extra_config: &str, scheme: &str) -> OwnRegistry {
        let dir = s.mkdir(name);
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: test-secret\n{extra_config}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config).stdout(Stdio::null()).stderr(std::fs::File::create(dir.join("log")).unwrap());
        // REGISTRY_* variables would override the config.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("REGISTRY_")) {
            cmd.env_remove(k);
        }
        let child = cmd.spawn().expect("docker-registry (scripts/deps installs it)");
        let addr = format!("127.0.0.1:{port}");
        let t0 = Instant::now();
        while Command::new("curl")
            .args(["-ks", "-o", "/dev/null", &format!("{scheme}://{addr}/v2/")])
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "registry {name} did not come up: {}",
                read(dir.join("log"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        OwnRegistry { child, addr }
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skopeo_push(src: &str, dest: &str) {
    sh(Command::new("skopeo").args(["copy", "-q", "--dest-tls-verify=false", src, &format!("docker://{dest}")]));
}

fn entries(dir: &Path) -> Vec<String> {
    if dir.exists() { names(dir) } else { Vec::new() }
}

/// Nothing of a failed pull is in the store: no image, no layer, no staging.
fn assert_nothing_pulled(root: &Path, what: &str) {
    for d in ["diff", "layers", "layerdb", "images", "tmp"] {
        assert_eq!(entries(&root.join(d)), Vec::<String>::new(), "{what}: {d}/ should be empty");
    }
}

fn image_id(root: &Path, image: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&sh(st(root).args(["inspect", image]))).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

/// Shows what a command said (with `--nocapture`), and passes it on.
fn shown(what: &str, out: Out) -> Out {
    eprintln!("--- {what}: exit {}\n{}", out.code, out.stderr.trim_end());
    out
}

/// The last line of a pull's stdout: the image ID.
fn pulled_id(out: &Out) -> String {
    out.stdout.lines().last().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------- a proxy that counts and breaks

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn is_blob_get(&self) -> bool {
        self.method == "GET" && self.path.contains("/blobs/sha256:")
    }
    /// A GET of a layer blob of the fixture app (its config is the other blob).
    fn is_layer_get(&self) -> bool {
        self.is_blob_get() && !self.path.contains(&APP_ID[7..])
    }
}

enum Act {
    Forward,
    /// Forward, flipping the last byte of the body.
    Corrupt,
    /// Forward the head and half the body, then close.
    Cut,
    /// Forward the head and half the body, then hang until the proxy stops.
    Stall,
    Respond(u16, Vec<(String, String)>, Vec<u8>),
}

type Handler = dyn Fn(&Req, &str) -> Act + Send + Sync;

/// An HTTP/1.1 proxy on loopback in front of a registry: one request per connection
/// (`Connection: close`), every request recorded as (method, path, status).
struct Proxy {
    addr: String,
    seen: Arc<Mutex<Vec<(String, String, u16)>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: &str, handler: impl Fn(&Req, &str) -> Act + Send + Sync + 'static) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (up, me, seen2, stop2) = (upstream.to_string(), addr.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (up, me, seen, stop, handler) =
                            (up.clone(), me.clone(), seen2.clone(), stop2.clone(), handler.clone());
                        std::thread::spawn(move || {
                            let _ = serve(conn, &up, &me, &*handler, &seen, &stop);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { addr, seen, stop }
    }

    fn seen(&self) -> Vec<(String, String, u16)> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, method: &str, path_part: &str) -> usize {
        self.seen().iter().filter(|(m, p, _)| m == method && p.contains(path_part)).count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    r.read_line(&mut first)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((first.trim_end().to_string(), headers))
}

fn serve(
    conn: TcpStream,
    upstream: &str,
    me: &str,
    handler: &Handler,
    seen: &Mutex<Vec<(String, String, u16)>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    let (first, headers) = read_head(&mut r)?;
    let mut parts = first.split(' ');
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let req = Req { method, path, headers, body };
    let act = handler(&req, me);
    if let Act::Respond(status, headers, body) = &act {
        seen.lock().unwrap().push((req.method.clone(), req.path.clone(), *status));
        let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        return w.write_all(body);
    }
    let mut up = TcpStream::connect(upstream)?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        if !k.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |i| i + 4);
    let status: u16 =
        String::from_utf8_lossy(&answer[..split]).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    seen.lock().unwrap().push((req.method.clone(), req.path.clone(), status));
    let (head, mut body) = (answer[..split].to_vec(), answer[split..].to_vec());
    match act {
        Act::Corrupt if !body.is_empty() => {
            let last = body.len() - 1;
            body[last] ^= 0xff;
        }
        Act::Cut | Act::Stall => {
            w.write_all(&head)?;
            w.write_all(&body[..body.len() / 2])?;
            w.flush()?;
            while matches!(act, Act::Stall) && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return Ok(());
        }
        _ => {}
    }
    w.write_all(&head)?;
    w.write_all(&body)
}

// ---------------------------------------------------------------- tests

#[test]
fn every_fixture_format_pushed_by_skopeo_pulls_as_the_expected_tree() {
    let Some(img) = fixture_images() else { return };
    let s = Scratch::new();
    let reg = Registry::start(&s, "reg");
    let expected = read(img.join("expected/app.tree"));
    let sources = [
        ("oci-gzip", format!("oci:{}:app", img.join("oci").display())),
        ("oci-zstd", format!("oci:{}:app", img.join("oci-zstd").display())),
        ("oci-plain", format!("oci:{}:app", img.join("oci-uncompressed").display())),
        ("docker-archive", format!("docker-archive:{}", img.join("app.docker.tar").display())),
        ("oci-archive", format!("oci-archive:{}:app", img.join("app.oci-archive.tar").display())),
    ];
    for (what, src) in &sources {
        let dest = format!("{}/fixtures/app:{what}", reg.addr);
        skopeo_push(src, &dest);
        let root = s.path(&format!("store-{what}"));
        let out = go(&root, &["pull", "--tls-verify=false", &dest]);
        assert_eq!(out.code, 0, "{what}: {}", out.stderr);
        assert_eq!(pulled_id(&out), APP_ID, "{what}: pulled image ID");
        assert_eq!(image_id(&root, &dest), APP_ID, "{what}: the image is tagged {dest}");
        assert_eq!(mounted_tree(&root, &dest), expected, "{what}: mounted tree differs from expected/app.tree");
        assert!(out.stderr.contains("3 layer(s) downloaded, 0 already present"), "{what}: {}", out.stderr);
        // Not a terminal: no progress bars.
        assert!(!out.stderr.contains("Layer 1/3"), "{what}: bars drawn off a terminal: {}", out.stderr);
    }
    // A registry that registries.conf calls insecure needs no --tls-verify=false; one it
    // does not is refused over plain HTTP.
    let conf = s.path("registries.conf");
    std::fs::write(&conf, format!("[[registry]]\nlocation = \"{}\"\ninsecure = true\n", reg.addr)).unwrap();
    let dest = format!("{}/fixtures/app:oci-gzip", reg.addr);
    let out = st(&s.path("conf")).args(["pull", &dest]).env("CONTAINERS_REGISTRIES_CONF", &conf).output().unwrap();
    assert!(out.status.success(), "insecure by registries.conf: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&conf, "[[registry]]\nlocation = \"elsewhere:5000\"\ninsecure = true\n").unwrap();
    let out = st(&s.path("conf2")).args(["pull", &dest]).env("CONTAINERS_REGISTRIES_CONF", &conf).output().unwrap();
    assert!(!out.status.success(), "a registry not marked insecure was reached over HTTP");

    // Pulled by digest: the same image, no tag.
    let digest = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{}/fixtures/app:oci-gzip", reg.addr),
    ]));
    let root = s.path("by-digest");
    let out = go(&root, &["pull", "--tls-verify=false", &format!("{}/fixtures/app@{}", reg.addr, digest.trim())]);
    assert_eq!((out.code, pulled_id(&out)), (0, APP_ID.to_string()), "{}", out.stderr);
    // Two pulls of one image into one store at once: both give the image, its layers once.
    let both = s.path("both");
    let src = format!("{}/fixtures/app:oci-zstd", reg.addr);
    let spawn = || {
        st(&both)
            .args(["pull", "--tls-verify=false", &src])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for o in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        assert!(o.status.success(), "concurrent pull: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), APP_ID);
    }
    assert_eq!(entries(&both.join("layerdb")).iter().filter(|n| n.ends_with(".json")).count(), 3);
    assert_eq!(entries(&both.join("tmp")), Vec::<String>::new(), "staging left behind");

    // A second pull into a store that has every layer downloads none.
    let out = go(&root, &["pull", "--tls-verify=false", &format!("{}/fixtures/app:docker-archive", reg.addr)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("0 layer(s) downloaded, 3 already present"), "{}", out.stderr);
}

/// An index with this machine's platform and two others, all naming the app manifest.
fn put_index(reg: &str, repo: &str, tag: &str, manifest_digest: &str, size: usize, media_type: &str, index_type: &str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let entry = |os: &str, arch: &str, variant: Option<&str>| {
        let mut p = serde_json::json!({"os": os, "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        serde_json::json!({"mediaType": media_type, "digest": manifest_digest, "size": size, "platform": p})
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [entry("linux", "ppc64le", None), entry("linux", "arm", Some("v7")), entry("linux", arch, None)],
    });
    let file = std::env::temp_dir().join(format!("index-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&index).unwrap()).unwrap();
    sh(Command::new("curl").args([
        "-fsS",
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {index_type}"),
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://{reg}/v2/{repo}/manifests/{tag}"),
    ]));
    let _ = std::fs::remove_file(file);
}

#[test]
fn an_index_gives_this_platform_or_names_the_ones_it_has() {
    let Some(img) = fixture_images() else { return };
    let s = Scratch::new();
    let reg = Registry::start(&s, "reg");
    skopeo_push(&format!("oci:{}:app", img.join("oci").display()), &format!("{}/multi/app:single", reg.addr));
    let raw = sh(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/multi/app:single", reg.addr),
    ]));
    let digest = format!("sha256:{}", sha256_hex(raw.as_bytes()));
    put_index(
        &reg.addr,
        "multi/app",
        "multi",
        &digest,
        raw.len(),
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    );
    let dest = format!("{}/multi/app:multi", reg.addr);

    let root = s.path("store");
    let out = go(&root, &["pull", "--tls-verify=false", &dest]);
    assert_eq!((out.code, pulled_id(&out)), (0, APP_ID.to_string()), "{}", out.stderr);
    assert!(out.stderr.contains(&digest), "the platform's manifest is named: {}", out.stderr);
    let out = go(&s.path("arm"), &["pull", "--tls-verify=false", "--platform", "linux/arm/v7", &dest]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out =
        shown("platform", go(&s.path("none"), &["pull", "--tls-verify=false", "--platform", "linux/s390x", &dest]));
    assert_ne!(out.code, 0);
    for part in ["no image for platform linux/s390x", "linux/ppc64le", "linux/arm/v7", &reg.addr, "multi/app"] {
        assert!(out.stderr.contains(part), "error lacks '{part}': {}", out.stderr);
    }
    assert_nothing_pulled(&s.path("none"), "no platform");

    // A Docker manifest list of Docker schema 2 manifests.
    skopeo_push(
        &format!("docker-archive:{}", img.join("app.docker.tar").display()),
        &format!("{}/multi/app:v2s2", reg.addr),
    );
    let raw = sh(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/multi/app:v2s2", reg.addr),
    ]));
    let v2s2 = "application/vnd.docker.distribution.manifest.v2+json";
    assert!(raw.contains(v2s2), "{raw}");
    let digest = format!("sha256:{}", sha256_hex(raw.as_bytes()));
    let list = "application/vnd.docker.distribution.manifest.list.v2+json";
    put_index(&reg.addr, "multi/app", "list", &digest, raw.len(), v2s2, list);
    let out = go(&s.path("list"), &["pull", "--tls-verify=false", &format!("{}/multi/app:list", reg.addr)]);
    assert_eq!((out.code, pulled_id(&out)), (0, APP_ID.to_string()), "manifest list: {}", out.stderr);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn push_is_read_by_skopeo_and_podman_and_pulls_back_the_same_image() {
    let Some(_) = fixture_images() else { return };
    let s = Scratch::new();
    let reg = Registry::start(&s, "reg");
    let proxy = Proxy::start(&reg.addr, |_, _| Act::Forward);
    let Some(root) = store_with_app(&s) else { return };
    let dest = format!("{}/pushed/app:v1", proxy.addr);

    let out = go(&root, &["push", "--tls-verify=false", "app", &dest]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Three layers and the config went up, each after a HEAD that found nothing.
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 4, "{:?}", proxy.seen());
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 4, "{:?}", proxy.seen());
    assert_eq!(proxy.count("PUT", "/manifests/v1"), 1);

    // skopeo sees the image with Strata's config, byte for byte: the same image ID.
    let inspect: serde_json::Value = serde_json::from_str(&sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--config",
        &format!("docker://{}/pushed/app:v1", reg.addr),
    ])))
    .unwrap();
    assert_eq!(inspect["rootfs"]["diff_ids"].as_array().map(|d| d.len()), Some(3));
    let config = sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--config",
        "--raw",
        &format!("docker://{}/pushed/app:v1", reg.addr),
    ]));
    assert_eq!(format!("sha256:{}", sha256_hex(config.as_bytes())), APP_ID);
    // podman pulls and runs it.
    let ran = sh(Command::new("bash").arg(fixtures().unwrap().join("peer-check")).args([
        "image",
        &format!("docker://{}/pushed/app:v1", reg.addr),
        "/app/hello.sh",
    ]));
    assert!(ran.contains("hello from app v2"), "{ran}");

    // A second push uploads nothing: HEADs and the manifest only.
    let before = proxy.seen().len();
    let out = go(&root, &["push", "--tls-verify=false", "app", &dest]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let second: Vec<_> = proxy.seen()[before..].to_vec();
    let uploads: Vec<_> =
        second.iter().filter(|(m, p, _)| (m == "POST" || m == "PUT") && p.contains("/blobs/")).collect();
    assert!(uploads.is_empty(), "second push uploaded: {uploads:?}");
    assert_eq!(second.iter().filter(|(m, _, st)| m == "HEAD" && *st == 200).count(), 4, "{second:?}");
    assert!(out.stderr.contains("0 blob(s) uploaded, 0 mounted, 4 present"), "{}", out.stderr);

    // rmi, pull: the same image ID and tree.
    let tree = mounted_tree(&root, "app");
    sh(st(&root).args(["rmi", "app"]));
    sh(st(&root).args(["rmi", "fixtures/app"]));
    assert_eq!(entries(&root.join("layerdb")), Vec::<String>::new(), "rmi left layers");
    let out = go(&root, &["pull", "--tls-verify=false", &dest]);
    assert_eq!((out.code, pulled_id(&out)), (0, APP_ID.to_string()), "{}", out.stderr);
    assert_eq!(mounted_tree(&root, &dest), tree);

    // A fresh store pulls it, then pushes it to another repository of the same registry:
    // the layers are mounted from the repository they came from, not uploaded.
    let fresh = s.path("fresh");
    let out = go(&fresh, &["pull", "--tls-verify=false", &dest]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let before = proxy.seen().len();
    let out = go(&fresh, &["push", "--tls-verify=false", &dest, &format!("{}/other/app:v1", proxy.addr)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let third: Vec<_> = proxy.seen()[before..].to_vec();
    let mounts = third
        .iter()
        .filter(|(m, p, st)| m == "POST" && p.contains("mount=") && p.contains("from=pushed/app") && *st == 201);
    assert_eq!(mounts.count(), 3, "{third:?}");
    assert_eq!(
        third.iter().filter(|(m, p, _)| m == "PUT" && p.contains("/blobs/")).count(),
        1,
        "only the config is uploaded: {third:?}"
    );
    assert!(out.stderr.contains("1 blob(s) uploaded, 3 mounted, 0 present"), "{}", out.stderr);
    let copied = s.path("other-copy");
    sh(Command::new("skopeo").args([
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{}/other/app:v1", reg.addr),
        &format!("oci:{}:x", copied.display()),
    ]));

    // Stale records (the repository they name lacks the blobs): the registry answers the
    // mount with an upload session (202), which is cancelled, and the layers are uploaded.
    for e in std::fs::read_dir(fresh.join("registry")).unwrap() {
        let p = e.unwrap().path();
        let mut rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        rec["sources"] = serde_json::json!([format!("{}/nowhere/app", proxy.addr)]);
        std::fs::write(&p, serde_json::to_vec(&rec).unwrap()).unwrap();
    }
    let before = proxy.seen().len();
    let out = go(&fresh, &["push", "--tls-verify=false", &dest, &format!("{}/third/app:v1", proxy.addr)]);
    assert_eq!(out.code, 0, "stale records: {}", out.stderr);
    let stale: Vec<_> = proxy.seen()[before..].to_vec();
    assert_eq!(
        stale.iter().filter(|(m, p, st)| m == "POST" && p.contains("from=nowhere/app") && *st == 202).count(),
        3,
        "{stale:?}"
    );
    assert_eq!(
        stale.iter().filter(|(m, _, st)| m == "DELETE" && *st == 204).count(),
        3,
        "sessions cancelled: {stale:?}"
    );
    assert!(out.stderr.contains("4 blob(s) uploaded, 0 mounted, 0 present"), "{}", out.stderr);

    // Chunked (zstd, so that no blob can be mounted): PATCHes of at most 16 KiB in order,
    // then an empty PUT; the same image back.
    let before = proxy.seen().len();
    let d = format!("{}/chunked/app:v1", proxy.addr);
    let out = go(&root, &["push", "--tls-verify=false", "--compress", "zstd", "--chunk-size", "16k", &dest, &d]);
    assert_eq!(out.code, 0, "chunked: {}", out.stderr);
    let chunked: Vec<_> = proxy.seen()[before..].to_vec();
    let patches =
        chunked.iter().filter(|(m, p, st)| m == "PATCH" && p.contains("/chunked/app/blobs/uploads/") && *st == 202);
    assert!(patches.count() >= 16, "the busybox layer alone takes more than 16 PATCHes: {chunked:?}");
    assert!(!chunked.iter().any(|(m, p, _)| m == "POST" && p.contains("mount=")), "{chunked:?}");
    let fresh_chunked = s.path("fresh-chunked");
    let out = go(&fresh_chunked, &["pull", "--tls-verify=false", &d]);
    assert_eq!((out.code, pulled_id(&out)), (0, APP_ID.to_string()), "chunked: {}", out.stderr);

    // Docker schema 2 and zstd pushes pull back to the same image too; skopeo copies them.
    for (fmt, comp, tag) in [("v2s2", "gzip", "docker"), ("oci", "zstd", "zstd"), ("oci", "none", "plain")] {
        let d = format!("{}/pushed/app:{tag}", reg.addr);
        let out = go(&root, &["push", "--tls-verify=false", "--format", fmt, "--compress", comp, &dest, &d]);
        assert_eq!(out.code, 0, "{tag}: {}", out.stderr);
        let raw: serde_json::Value = serde_json::from_str(&sh(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{d}"),
        ])))
        .unwrap();
        let want_type = if fmt == "v2s2" {
            "application/vnd.docker.distribution.manifest.v2+json"
        } else {
            "application/vnd.oci.image.manifest.v1+json"
        };
        assert_eq!(raw["mediaType"], want_type, "{tag}");
        let layer_type = raw["layers"][0]["mediaType"].as_str().unwrap().to_string();
        let want_layer = match comp {
            "zstd" => "+zstd",
            "none" => ".tar",
            _ => "gzip",
        };
        assert!(layer_type.ends_with(want_layer), "{tag}: {layer_type}");
        let copy = s.path(&format!("copy-{tag}"));
        sh(Command::new("skopeo").args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{d}"),
            &format!("oci:{}:x", copy.display()),
        ]));
        let fresh = s.path(&format!("fresh-{tag}"));
        let out = go(&fresh, &["pull", "--tls-verify=false", &d]);
        assert_eq!((out.code, pulled_id(&out)), (0, APP_ID.to_string()), "{tag}: {}", out.stderr);
    }
    let out = go(&root, &["push", "--tls-verify=false", "--format", "v2s2", "--compress", "zstd", &dest, &dest]);
    assert!(out.code != 0 && out.stderr.contains("zstd"), "{}", out.stderr);
}

#[test]
fn faults_give_clear_errors_and_leave_nothing_in_the_store() {
    let Some(img) = fixture_images() else { return };
    let s = Scratch::new();
    let reg = Registry::start(&s, "reg");
    skopeo_push(&format!("oci:{}:app", img.join("oci").display()), &format!("{}/f/app:v1", reg.addr));
    let pull = |root: &Path, proxy: &Proxy| {
        shown(
            &root.display().to_string(),
            go(root, &["pull", "--tls-verify=false", &format!("{}/f/app:v1", proxy.addr)]),
        )
    };

    // A corrupted byte in every layer blob: a digest mismatch naming registry, image and blob.
    let proxy = Proxy::start(&reg.addr, |r, _| if r.is_layer_get() { Act::Corrupt } else { Act::Forward });
    let root = s.path("corrupt");
    let out = pull(&root, &proxy);
    assert_ne!(out.code, 0);
    for part in ["digest mismatch", &proxy.addr, "f/app:v1", "blob sha256:"] {
        assert!(out.stderr.contains(part), "corrupt: error lacks '{part}': {}", out.stderr);
    }
    assert_nothing_pulled(&root, "corrupt");
    assert_eq!(sh(st(&root).arg("images")).lines().count(), 1, "corrupt: an image is listed");
    // A corrupted config: refused by its digest.
    let proxy =
        Proxy::start(&reg.addr, |r, _| if r.is_blob_get() && !r.is_layer_get() { Act::Corrupt } else { Act::Forward });
    let root = s.path("corrupt-config");
    let out = pull(&root, &proxy);
    assert!(
        out.code != 0 && out.stderr.contains("digest mismatch") && out.stderr.contains(&format!("config {APP_ID}")),
        "config: {}",
        out.stderr
    );
    assert_nothing_pulled(&root, "corrupt config");

    // A body cut short every time, resumed requests too: resumed three times, then a clear error.
    let proxy = Proxy::start(&reg.addr, |r, _| if r.is_layer_get() { Act::Cut } else { Act::Forward });
    let root = s.path("cut");
    let out = pull(&root, &proxy);
    assert_ne!(out.code, 0);
    for part in ["download broke 4 times", "f/app:v1: layer", "blob sha256:", &proxy.addr] {
        assert!(out.stderr.contains(part), "cut: error lacks '{part}': {}", out.stderr);
    }
    assert_nothing_pulled(&root, "cut");

    // Cut once per blob: the download goes on from where it broke (a Range request), and
    // the image is whole.
    let cut_once = Mutex::new(std::collections::HashSet::new());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let ranges2 = ranges.clone();
    let proxy = Proxy::start(&reg.addr, move |r, _| {
        if let Some(range) = r.header("Range") {
            ranges2.lock().unwrap().push(range.to_string());
        }
        if r.is_layer_get() && cut_once.lock().unwrap().insert(r.path.clone()) { Act::Cut } else { Act::Forward }
    });
    let root = s.path("cut-once");
    let out = pull(&root, &proxy);
    assert_eq!((out.code, pulled_id(&out)), (0, APP_ID.to_string()), "cut once: {}", out.stderr);
    assert_eq!(mounted_tree(&root, &format!("{}/f/app:v1", proxy.addr)), read(img.join("expected/app.tree")));
    let ranges = ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 3, "one resume per layer: {ranges:?}");
    assert!(ranges.iter().all(|r| r.starts_with("bytes=") && r != "bytes=0-"), "{ranges:?}");

    // 500, 503 and 429 before the answer: retried with backoff, the pull succeeds.
    let failures = Mutex::new(0);
    let proxy = Proxy::start(&reg.addr, move |r, _| {
        let mut n = failures.lock().unwrap();
        if (r.is_blob_get() || r.path.contains("/manifests/")) && *n < 3 {
            *n += 1;
            let status = [500, 503, 429][*n - 1];
            Act::Respond(status, vec![], br#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#.to_vec())
        } else {
            Act::Forward
        }
    });
    let root = s.path("retry");
    let out = pull(&root, &proxy);
    assert_eq!((out.code, pulled_id(&out)), (0, APP_ID.to_string()), "retry: {}", out.stderr);
    assert_eq!(proxy.seen().iter().filter(|(_, _, st)| [500, 503, 429].contains(st)).count(), 3);

    // Always 500: a clear error after the retries, with the registry's own message.
    let proxy = Proxy::start(&reg.addr, |r, _| {
        if r.is_layer_get() {
            Act::Respond(500, vec![], br#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#.to_vec())
        } else {
            Act::Forward
        }
    });
    let root = s.path("always-500");
    let out = pull(&root, &proxy);
    assert_ne!(out.code, 0);
    for part in ["500", "disk on fire", &proxy.addr, "blob sha256:"] {
        assert!(out.stderr.contains(part), "500: error lacks '{part}': {}", out.stderr);
    }
    assert_nothing_pulled(&root, "500");

    // A manifest larger than 4 MiB, a schema 1 manifest, a redirect loop, a 404.
    let huge = Proxy::start(&reg.addr, |r, _| {
        if r.path.contains("/manifests/") {
            let mut body = br#"{"schemaVersion":2,"x":""#.to_vec();
            body.extend(std::iter::repeat_n(b'a', 5 << 20));
            body.extend(br#""}"#);
            Act::Respond(200, vec![("Content-Type".into(), "application/vnd.oci.image.manifest.v1+json".into())], body)
        } else {
            Act::Forward
        }
    });
    let out = pull(&s.path("huge"), &huge);
    assert!(out.code != 0 && out.stderr.contains("larger than 4194304 bytes"), "huge: {}", out.stderr);
    let schema1 = Proxy::start(&reg.addr, |r, _| {
        if r.path.contains("/manifests/") {
            let body = br#"{"schemaVersion":1,"name":"f/app","tag":"v1","fsLayers":[],"history":[]}"#.to_vec();
            Act::Respond(
                200,
                vec![("Content-Type".into(), "application/vnd.docker.distribution.manifest.v1+prettyjws".into())],
                body,
            )
        } else {
            Act::Forward
        }
    });
    let out = pull(&s.path("schema1"), &schema1);
    assert!(out.code != 0 && out.stderr.contains("schema 1"), "schema 1: {}", out.stderr);
    for (what, body) in [
        ("not JSON", &b"{\"schemaVersion\": 2, "[..]),
        (
            "malformed",
            &br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":42,"layers":[]}"#
                [..],
        ),
    ] {
        let bad = Proxy::start(&reg.addr, move |r, _| {
            if r.path.contains("/manifests/") {
                let ct = ("Content-Type".into(), "application/vnd.oci.image.manifest.v1+json".into());
                Act::Respond(200, vec![ct], body.to_vec())
            } else {
                Act::Forward
            }
        });
        let root = s.path(&format!("bad-{}", what.replace(' ', "-")));
        let out = pull(&root, &bad);
        assert!(
            out.code != 0 && out.stderr.contains(what) && out.stderr.contains("manifest f/app:v1"),
            "{what}: {}",
            out.stderr
        );
        assert_nothing_pulled(&root, what);
    }
    let denied = Proxy::start(&reg.addr, |r, _| {
        if r.path.contains("/manifests/") {
            Act::Respond(
                403,
                vec![],
                br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#.to_vec(),
            )
        } else {
            Act::Forward
        }
    });
    let out = pull(&s.path("403"), &denied);
    assert!(
        out.code != 0 && out.stderr.contains("403 DENIED") && out.stderr.contains("access denied"),
        "403: {}",
        out.stderr
    );
    let looping = Proxy::start(&reg.addr, |r, me| {
        if r.is_layer_get() {
            Act::Respond(307, vec![("Location".into(), format!("http://{me}{}", r.path))], vec![])
        } else {
            Act::Forward
        }
    });
    let root = s.path("loop");
    let out = pull(&root, &looping);
    assert!(out.code != 0 && out.stderr.contains("redirect"), "redirect loop: {}", out.stderr);
    assert_nothing_pulled(&root, "redirect loop");
    let out = shown("404", go(&s.path("404"), &["pull", "--tls-verify=false", &format!("{}/f/nothing:v1", reg.addr)]));
    assert!(
        out.code != 0 && (out.stderr.contains("MANIFEST_UNKNOWN") || out.stderr.contains("NAME_UNKNOWN")),
        "404: {}",
        out.stderr
    );
    assert!(out.stderr.contains("f/nothing"), "404: {}", out.stderr);

    // kill -9 in the middle of a blob: nothing registered; check removes the staging.
    let stall = Proxy::start(&reg.addr, |r, _| if r.is_layer_get() { Act::Stall } else { Act::Forward });
    let root = s.path("killed");
    let mut child = st(&root)
        .args(["pull", "--tls-verify=false", &format!("{}/f/app:v1", stall.addr)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while stall.count("GET", "/blobs/sha256:") < 2 {
        assert!(t0.elapsed() < Duration::from_secs(20), "no blob was asked for: {:?}", stall.seen());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL, by pid
    child.wait().unwrap();
    assert_eq!(entries(&root.join("images")), Vec::<String>::new(), "killed pull registered an image");
    assert_eq!(entries(&root.join("layerdb")), Vec::<String>::new(), "killed pull registered a layer");
    assert!(!entries(&root.join("tmp")).is_empty(), "the killed pull's staging should be there for check");
    let checked = go(&root, &["check"]);
    assert!(checked.stdout.contains("removed leftover"), "check: {} {}", checked.stdout, checked.stderr);
    assert_nothing_pulled(&root, "killed, then check");
    drop(stall);

    // The registry down: a quick, clear error.
    let addr = reg.addr.clone();
    drop(reg);
    let t0 = Instant::now();
    let out = shown("down", go(&s.path("down"), &["pull", "--tls-verify=false", &format!("{addr}/f/app:v1")]));
    assert!(out.code != 0 && out.stderr.contains(&addr) && out.stderr.contains("/v2/"), "down: {}", out.stderr);
    assert!(t0.elapsed() < Duration::from_secs(15), "down: took {:?}", t0.elapsed());
}

#[test]
fn a_bearer_token_service_is_asked_with_the_right_scope_and_credentials() {
    let Some(img) = fixture_images() else { return };
    let s = Scratch::new();
    let reg = Registry::start(&s, "reg");
    skopeo_push(&format!("oci:{}:app", img.join("oci").display()), &format!("{}/tok/app:v1", reg.addr));
    // The proxy plays a token service: /token hands out a token per scope to user
    // "alice" (password "s3cret"); every other request needs a token for its repository,
    // and a token expires after 4 requests.
    let scopes = Arc::new(Mutex::new(Vec::<String>::new()));
    let scopes2 = scopes.clone();
    let uses = Mutex::new(std::collections::HashMap::<String, u32>::new());
    // Layer blobs are redirected to "blob storage" (another proxy), which must never see
    // the registry's token.
    let storage_auth = Arc::new(Mutex::new(Vec::<String>::new()));
    let storage_auth2 = storage_auth.clone();
    let storage = Proxy::start(&reg.addr, move |r, _| {
        storage_auth2.lock().unwrap().push(r.header("Authorization").unwrap_or("").to_string());
        Act::Forward
    });
    let storage_addr = storage.addr.clone();
    let proxy = Proxy::start(&reg.addr, move |r, me| {
        if let Some(query) = r.path.strip_prefix("/token?") {
            let good = r.header("Authorization") == Some(&format!("Basic {}", b64("alice:s3cret")));
            if !good {
                return Act::Respond(
                    401,
                    vec![],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad user"}]}"#.to_vec(),
                );
            }
            let scope = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("scope="))
                .unwrap_or("")
                .replace("%3A", ":")
                .replace("%2C", ",")
                .replace("%2F", "/");
            let mut issued = scopes2.lock().unwrap();
            issued.push(scope.clone());
            let token = format!("T[{scope}]#{}", issued.len());
            return Act::Respond(200, vec![], serde_json::to_vec(&serde_json::json!({"token": token})).unwrap());
        }
        let token = r.header("Authorization").and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
        let used = {
            let mut uses = uses.lock().unwrap();
            let n = uses.entry(token.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let expired = used > 4;
        let allowed =
            r.path == "/v2/" || (r.path.starts_with("/v2/tok/app/") && token.starts_with("T[repository:tok/app:pull"));
        let push_ok = token.contains("push") || (r.method == "GET" || r.method == "HEAD");
        if token.is_empty() || !allowed || !push_ok || expired {
            let challenge =
                format!(r#"Bearer realm="http://{me}/token",service="test-registry",scope="repository:tok/app:pull""#);
            return Act::Respond(
                401,
                vec![("WWW-Authenticate".into(), challenge)],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}"#.to_vec(),
            );
        }
        if r.is_layer_get() {
            return Act::Respond(307, vec![("Location".into(), format!("http://{storage_addr}{}", r.path))], vec![]);
        }
        Act::Forward
    });
    let dest = format!("{}/tok/app:v1", proxy.addr);
    let auth_file = s.path("auth.json");
    let with_auth = |root: &Path, args: &[&str]| {
        let o = st(root).args(args).env("REGISTRY_AUTH_FILE", &auth_file).env("HOME", s.path("home")).output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    };
    // Without credentials: the token service refuses, and the error says how to log in.
    let root = s.path("store");
    let out = shown("anonymous token", with_auth(&root, &["pull", "--tls-verify=false", &dest]));
    assert!(out.code != 0 && out.stderr.contains("strata login"), "anonymous: {}", out.stderr);
    // Credentials from Docker's config.json when auth.json has none.
    let docker = s.mkdir("home/.docker");
    std::fs::write(
        docker.join("config.json"),
        serde_json::to_vec(&serde_json::json!({"auths": {proxy.addr.clone(): {"auth": b64("alice:s3cret")}}})).unwrap(),
    )
    .unwrap();
    let out = with_auth(&root, &["pull", "--tls-verify=false", &dest]);
    assert_eq!((out.code, pulled_id(&out)), (0, APP_ID.to_string()), "pull with a token: {}", out.stderr);
    let issued = scopes.lock().unwrap().clone();
    assert!(issued.iter().all(|s| s == "repository:tok/app:pull"), "{issued:?}");
    // Six requests (API check, manifest, config, three layers): the token was renewed.
    assert!(issued.len() >= 2, "the expired token was not renewed: {issued:?}");
    let at_storage = storage_auth.lock().unwrap().clone();
    assert_eq!(at_storage.len(), 3, "three layers from blob storage: {at_storage:?}");
    assert!(at_storage.iter().all(|a| a.is_empty()), "the token went to blob storage: {at_storage:?}");
    // Push asks for pull,push.
    let out = with_auth(&root, &["push", "--tls-verify=false", &dest, &format!("{}/tok/app:v2", proxy.addr)]);
    assert_eq!(out.code, 0, "push with a token: {}", out.stderr);
    assert!(scopes.lock().unwrap().iter().any(|s| s == "repository:tok/app:pull,push"), "{:?}", scopes.lock().unwrap());
}

fn b64(text: &str) -> String {
    let out =
        Command::new("base64").arg("-w0").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().and_then(|mut c| {
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        });
    String::from_utf8(out.unwrap().stdout).unwrap()
}

#[test]
fn basic_auth_login_logout_and_tls_with_a_test_ca() {
    let Some(img) = fixture_images() else { return };
    let s = Scratch::new();
    let dir = s.mkdir("tls");
    // A test CA and a certificate for 127.0.0.1 signed by it.
    let ossl = |args: &[&str]| sh(Command::new("openssl").args(args).current_dir(&dir));
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=strata test CA",
    ]);
    ossl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "reg.key", "-out", "reg.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "reg.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "reg.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    sh(Command::new("htpasswd").args(["-Bbc"]).arg(dir.join("htpasswd")).args(["alice", "s3cret"]));
    let reg = OwnRegistry::start(
        &s,
        "reg",
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
            dir.join("reg.pem").display(),
            dir.join("reg.key").display(),
            dir.join("htpasswd").display()
        ),
        "https",
    );
    let auth_file = s.path("auth/auth.json");
    let ca = dir.join("ca.pem");
    let run = |args: &[&str], stdin: &str, trust: bool| {
        let mut c = st(&s.path("store"));
        c.args(args).env("REGISTRY_AUTH_FILE", &auth_file).env("HOME", s.path("home"));
        if trust {
            c.env("SSL_CERT_FILE", &ca);
        }
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    };
    sh(Command::new("skopeo").args([
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret",
        &format!("oci:{}:app", img.join("oci").display()),
        &format!("docker://{}/sec/app:v1", reg.addr),
    ]));
    let dest = format!("{}/sec/app:v1", reg.addr);

    // The CA unknown: refused, naming the certificate problem.
    let out = shown("untrusted CA", run(&["pull", &dest], "", false));
    assert!(out.code != 0 && out.stderr.to_lowercase().contains("certificate"), "untrusted: {}", out.stderr);
    // Trusted, not logged in: 401 and how to log in.
    let out = shown("not logged in", run(&["pull", &dest], "", true));
    assert!(out.code != 0 && out.stderr.contains(&format!("strata login {}", reg.addr)), "anonymous: {}", out.stderr);
    // No password (stdin is not a terminal, no --password-stdin): refused before asking.
    let out = run(&["login", "-u", "alice", &reg.addr], "", true);
    assert!(out.code != 0 && out.stderr.contains("--password-stdin"), "no password: {}", out.stderr);
    // A wrong password is refused and not stored.
    let out = shown("wrong password", run(&["login", "-u", "alice", "--password-stdin", &reg.addr], "wrong\n", true));
    assert!(out.code != 0 && out.stderr.contains("401"), "wrong password: {}", out.stderr);
    assert!(!auth_file.exists(), "a refused login was stored");
    // The right one is stored 0600, in auth.json's format.
    let out = run(&["login", "-u", "alice", "--password-stdin", &reg.addr], "s3cret\n", true);
    assert_eq!(out.code, 0, "login: {}", out.stderr);
    assert_eq!(std::fs::metadata(&auth_file).unwrap().permissions().mode() & 0o777, 0o600);
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth_file).unwrap()).unwrap();
    assert_eq!(stored["auths"][&reg.addr]["auth"], b64("alice:s3cret"));
    // podman reads the same file.
    let podman = Command::new("podman")
        .args(["login", "--get-login", "--authfile"])
        .arg(&auth_file)
        .arg(&reg.addr)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&podman.stdout).trim(), "alice", "{}", String::from_utf8_lossy(&podman.stderr));
    let out = run(&["pull", &dest], "", true);
    assert_eq!((out.code, pulled_id(&out)), (0, APP_ID.to_string()), "logged in: {}", out.stderr);
    let out = run(&["push", &dest, &format!("{}/sec/app:v2", reg.addr)], "", true);
    assert_eq!(out.code, 0, "push logged in: {}", out.stderr);
    // --tls-verify=false: any certificate.
    let out = run(&["pull", "--tls-verify=false", &dest], "", false);
    assert_eq!(out.code, 0, "tls-verify=false: {}", out.stderr);
    // logout removes the entry, and only it.
    let out = run(&["logout", &reg.addr], "", false);
    assert_eq!(out.code, 0, "logout: {}", out.stderr);
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth_file).unwrap()).unwrap();
    assert!(stored["auths"].get(&reg.addr).is_none(), "{stored}");
    let out = run(&["logout", &reg.addr], "", false);
    assert!(out.code != 0 && out.stderr.contains("not logged in"), "second logout: {}", out.stderr);
}

#[test]
fn run_pulls_only_when_told() {
    let Some(img) = fixture_images() else { return };
    let s = Scratch::new();
    let reg = Registry::start(&s, "reg");
    let name = format!("{}/r/app:v1", reg.addr);
    skopeo_push(&format!("oci:{}:app", img.join("oci").display()), &name);
    let root = s.path("store");
    // Not in the store: an error that says how to pull, and nothing fetched.
    let out = shown("run without --pull", go(&root, &["run", "--rm", &name, "/app/hello.sh"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!("strata pull {name}")) && out.stderr.contains("--pull missing"),
        "{}",
        out.stderr
    );
    assert_nothing_pulled(&root, "run without --pull");
    // --pull missing: pulled, then run.
    let out = go(&root, &["run", "--rm", "--pull", "missing", "--tls-verify=false", &name, "/app/hello.sh"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("hello from app v2"), "{}", out.stdout);
    assert_eq!(image_id(&root, &name), APP_ID);
    // Present now: create needs no registry (it is stopped) unless --pull always.
    drop(reg);
    let out = go(&root, &["create", "--pull", "missing", &name]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = go(&root, &["create", "--pull", "always", "--tls-verify=false", &name]);
    assert!(out.code != 0 && out.stderr.contains("/v2/"), "--pull always with the registry down: {}", out.stderr);
}
