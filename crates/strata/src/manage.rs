//! `pause`, `unpause`, `rename`, `top`, `stats`: Docker's commands that look at, or
//! freeze, a running container through its cgroup.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use strata_runtime::cgroup;
use strata_store::Store;
use strata_store::container::{self, Container};

use crate::ui;

/// Runs `f` for each container named, printing the name on success, as Docker does;
/// exit status 1 if any failed.
pub fn each(store: &Store, refs: &[String], mut f: impl FnMut(&Container) -> Result<()>) -> ExitCode {
    let mut failed = false;
    for r in refs {
        match container::find(store, r).map_err(anyhow::Error::from).and_then(|c| f(&c)) {
            Ok(()) => println!("{r}"),
            Err(e) => {
                eprintln!("strata: {e:#}");
                failed = true;
            }
        }
    }
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// Is the running container `c` frozen (`docker pause`)?
pub fn paused(c: &Container) -> bool {
    c.is_running() && cgroup::is_frozen(&c.id)
}

pub fn cmd_pause(store: &Store, refs: &[String]) -> Result<ExitCode> {
    Ok(each(store, refs, |c| {
        if !c.is_running() {
            bail!("Container {} is not running", c.id);
        }
        if cgroup::is_frozen(&c.id) {
            bail!("Container {} is already paused", c.id);
        }
        cgroup::freeze(&c.id, true)?;
        Ok(())
    }))
}

pub fn cmd_unpause(store: &Store, refs: &[String]) -> Result<ExitCode> {
    Ok(each(store, refs, |c| {
        if !paused(c) {
            bail!("Container {} is not paused", c.id);
        }
        cgroup::freeze(&c.id, false)?;
        Ok(())
    }))
}

/// Thaws a paused container after a signal was sent to it, so that it gets it (as
/// Docker does for `stop` and `kill`). Nothing for a container that is not paused.
pub fn thaw_after_signal(c: &Container) {
    if cgroup::is_frozen(&c.id)
        && let Err(e) = cgroup::freeze(&c.id, false)
    {
        tracing::warn!("container {}: {e}", c.name);
    }
}

pub fn cmd_rename(store: &Store, old: &str, new: &str) -> Result<ExitCode> {
    container::rename(store, old, new)?;
    Ok(ExitCode::SUCCESS)
}

/// `top CTR [ps OPTIONS]`: the host's `ps` (default `-ef`), only the container's rows,
/// as Docker does.
pub fn cmd_top(store: &Store, reference: &str, ps_args: &[String]) -> Result<ExitCode> {
    let c = container::find(store, reference)?;
    if !c.is_running() {
        bail!("Container {} is not running", c.id);
    }
    let pids = cgroup::procs(&c.id)?;
    let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
    let out = std::process::Command::new("ps").args(&args).output().context("running ps (procps)")?;
    if !out.status.success() {
        bail!("ps {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let (titles, rows) = filter_ps(&String::from_utf8_lossy(&out.stdout), &pids)?;
    print_tabbed(&titles, &rows);
    Ok(ExitCode::SUCCESS)
}

/// `ps` output: its titles, and the rows whose PID is one of `pids`, each cut into as
/// many fields as there are titles (the last one keeps its spaces).
fn filter_ps(text: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = text.lines();
    let titles: Vec<String> = lines.next().unwrap_or_default().split_whitespace().map(str::to_string).collect();
    let col = titles.iter().position(|t| t == "PID").ok_or_else(|| anyhow!("Couldn't find PID field in ps output"))?;
    let mut rows = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let pid: i32 = fields[col].parse().map_err(|_| anyhow!("unexpected pid '{}' in ps output", fields[col]))?;
        if pids.contains(&pid) {
            let mut row: Vec<String> = fields[..titles.len() - 1].iter().map(|s| s.to_string()).collect();
            row.push(fields[titles.len() - 1..].join(" "));
            rows.push(row);
        }
    }
    Ok((titles, rows))
}

/// Docker's `top` table: Go's tabwriter with a minimum width of 20 and padding 3.
fn print_tabbed(titles: &[String], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = titles.iter().map(|t| t.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let last = cells.len().saturating_sub(1);
        let text: String = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == last { c.clone() } else { format!("{c:<w$}", w = (widths[i] + 3).max(20)) })
            .collect();
        println!("{}", text.trim_end());
    };
    line(titles);
    for r in rows {
        line(r);
    }
}

/// Options of `stats`.
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// One sample (CPU % over about a second), then exit
    #[arg(long)]
    pub no_stream: bool,
    /// Every container, not only the running ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Containers (default: all running)
    pub containers: Vec<String>,
}

/// One reading of a container and of the host's CPU time.
struct Sample {
    usage: cgroup::Usage,
    /// The host's CPU time in nanoseconds (all CPUs), from /proc/stat: Docker's
    /// `system_cpu_usage`.
    system_ns: u64,
    net: (u64, u64),
}

fn system_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| l.split_whitespace().skip(1).take(8).filter_map(|f| f.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * (1_000_000_000 / hz)
}

/// Received and sent bytes of the container's interfaces but `lo` (none with the host's
/// network, as Docker shows it).
fn net_io(c: &Container) -> (u64, u64) {
    if c.config.network == "host" {
        return (0, 0);
    }
    let text = std::fs::read_to_string(format!("/proc/{}/net/dev", c.state.pid)).unwrap_or_default();
    let mut total = (0, 0);
    for line in text.lines().skip(2) {
        let Some((iface, rest)) = line.split_once(':') else { continue };
        let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        if iface.trim() != "lo" && f.len() >= 9 {
            total.0 += f[0];
            total.1 += f[8];
        }
    }
    total
}

fn sample(c: &Container) -> Sample {
    Sample { usage: cgroup::usage(&c.id), system_ns: system_cpu_ns(), net: net_io(c) }
}

fn host_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    kb * 1024
}

/// One row of `stats` from two samples of a container.
fn row(c: &Container, before: &Sample, after: &Sample, host_mem: u64, cpus: f64) -> Vec<String> {
    let cpu_delta = after.usage.cpu_ns.saturating_sub(before.usage.cpu_ns) as f64;
    let sys_delta = after.system_ns.saturating_sub(before.system_ns) as f64;
    // Docker's calculateCPUPercentUnix.
    let cpu = if sys_delta > 0.0 { cpu_delta / sys_delta * cpus * 100.0 } else { 0.0 };
    let limit = after.usage.memory_limit.map_or(host_mem, |l| l.min(host_mem.max(1)));
    let mem_pct = if limit > 0 { after.usage.memory as f64 / limit as f64 * 100.0 } else { 0.0 };
    let u = &after.usage;
    vec![
        c.short_id().to_string(),
        c.name.clone(),
        format!("{cpu:.2}%"),
        format!("{} / {}", ui::bytes_size(u.memory), ui::bytes_size(limit)),
        format!("{mem_pct:.2}%"),
        // Docker's stats: HumanSizeWithPrecision(n, 3).
        format!("{} / {}", ui::human_size(after.net.0), ui::human_size(after.net.1)),
        format!("{} / {}", ui::human_size(u.block_read), ui::human_size(u.block_write)),
        u.pids.to_string(),
    ]
}

const STATS_HEADER: [&str; 8] =
    ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"];

/// `stats`: CPU, memory, network, block I/O and pids of containers, from their cgroups;
/// CPU % over a second, as Docker's `--no-stream` measures it; else every second.
pub fn cmd_stats(store: &Store, args: &StatsArgs) -> Result<ExitCode> {
    let pick = |store: &Store| -> Result<Vec<Container>> {
        if args.containers.is_empty() {
            return Ok(container::list(store)?.into_iter().filter(|c| args.all || c.is_running()).collect());
        }
        args.containers.iter().map(|r| Ok(container::find(store, r)?)).collect()
    };
    let host_mem = host_memory();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let clear = std::io::stdout().is_terminal();
    let mut list = pick(store)?;
    let mut before: Vec<Sample> = list.iter().map(sample).collect();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let after: Vec<Sample> = list.iter().map(sample).collect();
        let rows: Vec<Vec<String>> = list
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(c, (b, a))| {
                let mut r = row(c, b, a, host_mem, cpus);
                if !c.is_running() {
                    // A stopped container: Docker's zeros.
                    r = vec![
                        r[0].clone(),
                        r[1].clone(),
                        "0.00%".into(),
                        "0B / 0B".into(),
                        "0.00%".into(),
                        "0B / 0B".into(),
                        "0B / 0B".into(),
                        "0".into(),
                    ];
                }
                r
            })
            .collect();
        if !args.no_stream && clear {
            // Docker's screen: cleared and drawn again each second.
            print!("\x1b[2J\x1b[H");
        }
        crate::ui::table(&STATS_HEADER, &rows);
        let _ = std::io::stdout().flush();
        if args.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
        // Containers started or removed since are picked up (when none were named).
        list = match pick(store) {
            Ok(l) => l,
            Err(e) if !args.containers.is_empty() => return Err(e),
            Err(_) => list,
        };
        before = list.iter().map(sample).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_of_the_container_only() {
        let text = "UID PID PPID C STIME TTY TIME CMD\n\
                    root 1 0 0 05:00 ? 00:00:01 /sbin/init\n\
                    root 4242 4240 0 05:01 ? 00:00:00 sleep 300 now\n";
        let (titles, rows) = filter_ps(text, &[4242]).expect("parsed");
        assert_eq!(titles.len(), 8);
        assert_eq!(rows, vec![vec!["root", "4242", "4240", "0", "05:01", "?", "00:00:00", "sleep 300 now"]]);
        assert!(filter_ps("USER CMD\nroot x\n", &[1]).is_err());
    }
}
