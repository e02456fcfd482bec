//! `strata`: the command line. Thin: parses, calls the libraries, prints.

mod daemon;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for bad input (options, branches, mountpoint), as mount(8) uses.
const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(name = "strata", version, about = "Layered filesystem and image storage engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount a union of branches (AUFS: -o br=A=rw:B=ro; OverlayFS: -o lowerdir=..,upperdir=..,workdir=..)
    Mount {
        /// Mount options, comma separated; may be repeated
        #[arg(short = 'o', value_name = "OPTIONS")]
        options: Vec<String>,
        /// Stay in the foreground (default: return once the mount is live)
        #[arg(short = 'f', long)]
        foreground: bool,
        /// Write the daemon's log here (default: discarded when in the background)
        #[arg(long, value_name = "FILE")]
        log_file: Option<PathBuf>,
        mountpoint: PathBuf,
    },
    /// Unmount a Strata mount (also one whose daemon died)
    Umount {
        /// Detach a busy mount lazily
        #[arg(short = 'l', long)]
        lazy: bool,
        mountpoint: PathBuf,
    },
    /// Print a mount's branches, top first, as PATH=PERM, then its id
    Branches { mountpoint: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(drop_in_args(std::env::args_os().collect()));
    match cli.command {
        Command::Mount { options, foreground, log_file, mountpoint } => {
            daemon::mount(&options, foreground, log_file.as_deref(), &mountpoint)
        }
        Command::Umount { lazy, mountpoint } => match strata_union::unmount(&mountpoint, lazy) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(EXIT_USAGE, &e),
        },
        Command::Branches { mountpoint } => match strata_union::branches_of(&mountpoint) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_USAGE, &e),
        },
    }
}

/// Drop-in for fuse-overlayfs: called as `fuse-overlayfs` (a symlink) or as
/// `strata -o lowerdir=...,upperdir=...,workdir=... MOUNTPOINT`, it means `strata mount`.
fn drop_in_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let called_as = args.first().and_then(|a| Path::new(a).file_name().map(|n| n.to_os_string()));
    let first = args.get(1).map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let options_first = first.starts_with("-o") || first == "-f";
    if called_as.as_deref() == Some(std::ffi::OsStr::new("fuse-overlayfs")) || options_first {
        args.insert(1, "mount".into());
    }
    args
}

/// Prints `strata: MESSAGE` and returns `code`.
fn fail(code: u8, msg: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("strata: {msg}");
    ExitCode::from(code)
}
