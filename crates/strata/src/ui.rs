//! What the user sees: progress bars (only when stdout is a terminal), sizes and ages
//! written the way `docker` writes them.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_store::Progress;

/// Progress bars on stderr, shown when stdout is a terminal; notes go to stdout. A bar of
/// a group (several blobs moving at once) is drawn with the others.
pub struct Bars {
    shown: bool,
    group: Option<MultiProgress>,
    bar: RefCell<Option<ProgressBar>>,
}

impl Bars {
    pub fn new() -> Bars {
        Bars { shown: std::io::stdout().is_terminal(), group: None, bar: RefCell::new(None) }
    }

    /// A bar drawn in `group`, or none at all.
    pub fn in_group(group: Option<MultiProgress>) -> Bars {
        Bars { shown: group.is_some(), group, bar: RefCell::new(None) }
    }
}

impl Progress for Bars {
    fn begin(&self, label: &str, total: Option<u64>) {
        if !self.shown {
            return;
        }
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{msg:40!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{spinner} {msg:40!} {bytes:>10} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        let bar = match &self.group {
            Some(g) => g.add(bar),
            None => bar,
        };
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        *self.bar.borrow_mut() = Some(bar);
    }

    fn advance(&self, bytes: u64) {
        if let Some(b) = self.bar.borrow().as_ref() {
            b.inc(bytes);
        }
    }

    fn end(&self) {
        if let Some(b) = self.bar.borrow_mut().take() {
            // A finished bar leaves one plain line, so that notes on stdout start clean.
            b.finish_and_clear();
            let done = format!("{}: done ({})", b.message(), indicatif::HumanBytes(b.position()));
            match &self.group {
                Some(g) => {
                    g.remove(&b);
                    let _ = g.println(done);
                }
                None => eprintln!("{done}"),
            }
        }
    }

    fn note(&self, line: &str) {
        println!("{line}");
    }
}

/// `docker`'s human sizes: decimal units, three significant digits (`2.15MB`): go-units'
/// `HumanSizeWithPrecision(n, 3)`, what `images`, `system df` and `stats`' I/O show.
pub fn human_size(bytes: u64) -> String {
    scaled(bytes as f64, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"], 3)
}

/// go-units' `BytesSize` (binary units, four significant digits: `12.5MiB`), what
/// `stats` shows of memory.
pub fn bytes_size(n: u64) -> String {
    scaled(n as f64, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 4)
}

fn scaled(mut v: f64, base: f64, units: &[&str], precision: i32) -> String {
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    format!("{}{}", go_g(v, precision), units[i])
}

/// Go's `%.{precision}g` of a value below 10^precision, trailing zeros dropped.
fn go_g(v: f64, precision: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = precision - 1 - v.abs().log10().floor() as i32;
    let text = format!("{v:.prec$}", prec = digits.max(0) as usize);
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
}

/// "3 days ago", from an RFC 3339 time; the raw text when it does not parse.
pub fn ago(rfc3339: Option<&str>) -> String {
    let Some(text) = rfc3339 else { return "N/A".into() };
    let Ok(then) = humantime::parse_rfc3339_weak(text) else { return text.to_string() };
    let secs = SystemTime::now().duration_since(then).map(|d| d.as_secs()).unwrap_or(0);
    let (n, unit) = match secs {
        0..60 => return "Less than a minute ago".into(),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        86400..1209600 => (secs / 86400, "day"),
        1209600..5184000 => (secs / 604800, "week"),
        5184000..63072000 => (secs / 2592000, "month"),
        _ => (secs / 31536000, "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural} ago")
}

/// The time since an RFC 3339 time as Docker words it in `ps` ("5 seconds", "About a
/// minute", "3 hours"): go-units' HumanDuration.
pub fn human_duration(rfc3339: Option<&str>) -> String {
    let Some(then) = rfc3339.and_then(|t| humantime::parse_rfc3339_weak(t).ok()) else { return "N/A".into() };
    let secs = SystemTime::now().duration_since(then).map(|d| d.as_secs()).unwrap_or(0);
    let (minutes, hours) = (secs / 60, (secs + 1800) / 3600);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// Prints rows as columns separated by three spaces, like `docker`'s tables.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let parts: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| if i == last { c } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        println!("{}", parts.join("   ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2_150_000), "2.15MB");
        assert_eq!(human_size(21_500_000), "21.5MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(9_996), "10kB");
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(3_240_000), "3.09MiB");
        assert_eq!(bytes_size(2_087_354_368), "1.944GiB");
        assert_eq!(bytes_size(64 << 20), "64MiB");
    }
}
