//! Invoking CNI plugins (the Container Network Interface, spec 1.0): each plugin is an
//! executable found on `CNI_PATH`, given its command and the container in `CNI_*`
//! environment variables and its configuration as JSON on stdin; `ADD` prints a result
//! as JSON, errors come as `{"code", "msg", "details"}` with a non-zero exit status.
//!
//! A network configuration list (`plugins: [...]`) is run as the spec says: `ADD` in
//! order, each plugin given the previous one's result as `prevResult`; `DEL` in reverse
//! order and `CHECK` in order, each given the cached result of `ADD`. A plugin that
//! declares a capability (`portMappings`) gets the runtime's value for it in
//! `runtimeConfig`. No crate of crates.io does this for a runtime and is kept up (the
//! Rust CNI crates are for writing plugins), hence this small module.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// Where Debian's `containernetworking-plugins` and the upstream tarball put them.
pub const PLUGIN_DIRS: [&str; 3] = ["/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"];

pub const VERSION: &str = "1.0.0";

/// How long one plugin may run: they take milliseconds, or seconds when iptables waits
/// for its lock; one that hangs is killed rather than hanging `run`, `stop` or `rm`.
const PLUGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The container a command is about.
pub struct Target<'a> {
    pub container_id: &'a str,
    /// The network namespace's path (empty when it is gone: `DEL` still releases).
    pub netns: &'a Path,
    pub ifname: &'a str,
}

fn find_plugin(kind: &str) -> Result<PathBuf> {
    if kind.is_empty() || kind.contains('/') {
        bail!("invalid CNI plugin type {kind:?}");
    }
    PLUGIN_DIRS.iter().map(|d| Path::new(d).join(kind)).find(|p| p.is_file()).ok_or_else(|| {
        anyhow!(
            "CNI plugin {kind} not found in {}: install the containernetworking-plugins package (or use --network none or host)",
            PLUGIN_DIRS.join(", ")
        )
    })
}

/// Runs one plugin; its output (the result of `ADD`, empty for the others).
pub fn invoke(command: &str, config: &Value, t: &Target<'_>) -> Result<Option<Value>> {
    let kind = config.get("type").and_then(Value::as_str).unwrap_or_default();
    let exe = find_plugin(kind)?;
    let path = std::env::var("PATH").unwrap_or_default();
    // The plugins run iptables and friends from PATH.
    let path = if path.split(':').any(|d| d == "/usr/sbin" || d == "/sbin") {
        path
    } else {
        format!("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{path}")
    };
    let mut child = Command::new(&exe)
        .env_clear()
        .env("PATH", path)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", t.container_id)
        .env("CNI_NETNS", t.netns)
        .env("CNI_IFNAME", t.ifname)
        .env("CNI_PATH", PLUGIN_DIRS.join(":"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running CNI plugin {}", exe.display()))?;
    // Opened before anything can reap the plugin: a kill through it never reaches a
    // process that took its pid.
    let pidfd = rustix::process::Pid::from_raw(child.id() as i32)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let input = serde_json::to_vec(config)?;
    let written = match child.stdin.take() {
        // The configuration is small: it fits the pipe, the plugin reads it first.
        Some(mut stdin) => stdin.write_all(&input),
        None => Ok(()),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = match rx.recv_timeout(PLUGIN_TIMEOUT) {
        Ok(out) => out.with_context(|| format!("waiting for CNI plugin {kind}"))?,
        Err(_) => {
            if let Some(fd) = &pidfd {
                let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
            }
            bail!("CNI plugin {kind} {command} did not finish in {} s: killed", PLUGIN_TIMEOUT.as_secs());
        }
    };
    tracing::debug!(
        "CNI {kind} {command} {}: {} {}",
        t.container_id,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let err: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let msg = err.get("msg").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if stderr.is_empty() { format!("{}", out.status) } else { stderr }
        });
        let details = err.get("details").and_then(Value::as_str).filter(|d| !d.is_empty());
        bail!("CNI plugin {kind} {command} failed: {msg}{}", details.map(|d| format!(" ({d})")).unwrap_or_default());
    }
    // A plugin that succeeded without reading all its configuration is not trusted.
    written.with_context(|| format!("writing to CNI plugin {kind}"))?;
    if command != "ADD" {
        return Ok(None);
    }
    let result = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("CNI plugin {kind} {command}: its result is not JSON"))?;
    Ok(Some(result))
}

/// One plugin's configuration out of a list: the list's name and version, the previous
/// result, and the runtime's values for the capabilities it declares.
fn plugin_config(list: &Value, plugin: &Value, prev: Option<&Value>, runtime: &Value) -> Value {
    let mut conf = plugin.clone();
    let Some(obj) = conf.as_object_mut() else { return conf };
    obj.insert("name".into(), list["name"].clone());
    obj.insert("cniVersion".into(), list["cniVersion"].clone());
    if let Some(p) = prev {
        obj.insert("prevResult".into(), p.clone());
    }
    let mut rc = serde_json::Map::new();
    if let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) {
        for (cap, on) in caps {
            if on.as_bool() == Some(true)
                && let Some(v) = runtime.get(cap)
            {
                rc.insert(cap.clone(), v.clone());
            }
        }
    }
    if !rc.is_empty() {
        obj.insert("runtimeConfig".into(), Value::Object(rc));
    }
    conf
}

fn plugins(list: &Value) -> &[Value] {
    list.get("plugins").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// `ADD` of a configuration list; its result. On failure, what was added is deleted.
pub fn add(list: &Value, runtime: &Value, t: &Target<'_>) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for plugin in plugins(list) {
        let conf = plugin_config(list, plugin, prev.as_ref(), runtime);
        match invoke("ADD", &conf, t) {
            Ok(r) => prev = r.or(prev),
            Err(e) => {
                // As libcni: a failed ADD is undone with a DEL of the whole list.
                if let Err(d) = del(list, runtime, prev.as_ref(), t) {
                    tracing::warn!("undoing a failed CNI ADD: {d:#}");
                }
                return Err(e);
            }
        }
    }
    Ok(prev.unwrap_or_else(|| json!({"cniVersion": VERSION})))
}

/// `DEL` of a configuration list, with the cached result of its `ADD` (if any). Every
/// plugin is asked, even after one failed; the first error is returned.
pub fn del(list: &Value, runtime: &Value, cached: Option<&Value>, t: &Target<'_>) -> Result<()> {
    let mut first = None;
    for plugin in plugins(list).iter().rev() {
        let conf = plugin_config(list, plugin, cached, runtime);
        if let Err(e) = invoke("DEL", &conf, t) {
            tracing::warn!("{e:#}");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// `CHECK` of a configuration list against the cached result of its `ADD`.
pub fn check(list: &Value, runtime: &Value, cached: &Value, t: &Target<'_>) -> Result<()> {
    for plugin in plugins(list) {
        invoke("CHECK", &plugin_config(list, plugin, Some(cached), runtime), t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_gets_the_list_name_its_previous_result_and_its_capabilities() {
        let list = json!({"cniVersion": VERSION, "name": "n1", "plugins": [
            {"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": true}}]});
        let runtime = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
        let prev = json!({"ips": [{"address": "10.1.0.2/24"}]});
        let b = plugin_config(&list, &list["plugins"][0], None, &runtime);
        assert_eq!(b, json!({"type": "bridge", "name": "n1", "cniVersion": VERSION}));
        let p = plugin_config(&list, &list["plugins"][1], Some(&prev), &runtime);
        assert_eq!(p["prevResult"], prev);
        assert_eq!(p["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert_eq!(p["name"], "n1");
    }

    #[test]
    fn a_missing_plugin_is_named() {
        let err = find_plugin("no-such-plugin-here").unwrap_err().to_string();
        assert!(err.contains("no-such-plugin-here") && err.contains("containernetworking-plugins"), "{err}");
        assert!(find_plugin("../bridge").is_err());
    }
}
