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
    /// Print a mount's branches, top first, as PATH=PERM, then its id; or change them live
    Branches {
        mountpoint: PathBuf,
        #[command(subcommand)]
        change: Option<Change>,
    },
}

/// Changes to the branches of a live mount (AUFS `remount,add/del/mod/append/prepend`).
#[derive(Subcommand, Debug)]
enum Change {
    /// Insert a read-only branch (top, or at position N from the top, 0-based)
    Add {
        #[arg(long, value_name = "N")]
        at: Option<usize>,
        /// PATH=PERM, PERM ro or ro+wh
        branch: String,
    },
    /// Add a read-only branch at the bottom
    Append { branch: String },
    /// Add a read-only branch at the top
    Prepend { branch: String },
    /// Remove a branch (refused while a file on it is open)
    Del { path: PathBuf },
    /// Change a branch's permission (rw to ro refused while a file on it is open for writing)
    Mod { branch: String },
}

/// `PATH=PERM` from the command line, with PATH made absolute (the daemon's directory is not ours).
fn branch_arg(arg: &str) -> Result<strata_union::BranchSpec, String> {
    let (path, perm) = arg.rsplit_once('=').ok_or_else(|| format!("'{arg}': expected PATH=PERM"))?;
    let perm = perm.parse::<strata_union::Perm>().map_err(|e| e.to_string())?;
    let path = std::path::absolute(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(strata_union::BranchSpec { path, perm })
}

fn change_of(change: Change) -> Result<strata_union::BranchChange, String> {
    use strata_union::BranchChange as C;
    Ok(match change {
        Change::Add { at, branch } => C::Add { at: Some(at.unwrap_or(0)), spec: branch_arg(&branch)? },
        Change::Append { branch } => C::Add { at: None, spec: branch_arg(&branch)? },
        Change::Prepend { branch } => C::Add { at: Some(0), spec: branch_arg(&branch)? },
        Change::Del { path } => C::Del(std::path::absolute(&path).map_err(|e| format!("{}: {e}", path.display()))?),
        Change::Mod { branch } => C::Mod(branch_arg(&branch)?),
    })
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
        Command::Branches { mountpoint, change: None } => match strata_union::branches_of(&mountpoint) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_USAGE, &e),
        },
        Command::Branches { mountpoint, change: Some(change) } => {
            let change = match change_of(change) {
                Ok(c) => c,
                Err(e) => return fail(EXIT_USAGE, &e),
            };
            match strata_union::change_branches(&mountpoint, &change) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(1, &e),
            }
        }
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
