//! `strata`: the command line. Thin: parses, calls the libraries, prints.

mod attach;
mod build;
mod cni;
mod containers;
mod cp;
mod daemon;
mod images;
mod lifecycle;
mod logs;
mod manage;
mod monitor;
mod network;
mod registry;
mod terminal;
mod ui;
mod volumes;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for bad input (options, branches, mountpoint), as mount(8) uses.
const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(name = "strata", version, about = "Layered filesystem and image storage engine")]
struct Cli {
    /// The store's root directory
    #[arg(long, global = true, env = "STRATA_ROOT", default_value = strata_store::DEFAULT_ROOT)]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount a union of branches (AUFS: -o br=A=rw:B=ro; OverlayFS: -o lowerdir=..,upperdir=..,workdir=..),
    /// or, without -o, a container (read-write, at ROOT/mnt/ID) or an image (read-only, at
    /// ROOT/mnt/image-ID) from the store, printing the path
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
        /// Mount point, or the image to mount when no -o is given
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
    /// Load images from a docker-archive, an OCI layout directory or an OCI archive (gzip/zstd too)
    Load {
        /// Read from this file or directory instead of stdin
        #[arg(short = 'i', long = "input", value_name = "PATH")]
        input: Option<PathBuf>,
    },
    /// Create a one-layer image from a root filesystem directory or tarball ('-' for stdin)
    Import { source: PathBuf, reference: String },
    /// Write images to a docker-archive, an OCI layout or an OCI archive
    Save {
        /// Output file (a directory for --format oci); stdout when not given
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "docker-archive")]
        format: SaveFormatArg,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// List images
    Images {
        #[arg(long, value_enum, default_value = "table")]
        format: images::ListFormat,
    },
    /// Show images' configuration, layers and history as JSON
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show the history of an image, one line per build step, newest first
    History {
        image: String,
        /// Do not shorten the CREATED BY column
        #[arg(long)]
        no_trunc: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: images::ListFormat,
    },
    /// Give an image another name
    Tag { source: String, target: String },
    /// Remove images (a tag; the image with its last tag; unused layers with it)
    Rmi {
        /// Remove even if several tags or containers refer to it
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Find and repair what interrupted commands left in the store
    Check,
    /// Create a container from an image (prints its ID)
    Create {
        #[command(flatten)]
        args: containers::CreateArgs,
    },
    /// Create and start a container, in the foreground (exits with the command's status)
    /// or with -d in the background (prints its ID)
    Run {
        /// Run in the background under a monitor process; print the container's ID
        #[arg(short = 'd', long)]
        detach: bool,
        /// Remove the container when it exits
        #[arg(long)]
        rm: bool,
        /// Keep stdin attached (else the command reads /dev/null)
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Give the command a pseudo-terminal
        #[arg(short = 't', long)]
        tty: bool,
        #[command(flatten)]
        args: containers::CreateArgs,
    },
    /// Run a created or exited container again, keeping its read-write layer
    Start {
        /// In the background under a monitor process (what `docker start` does without -a); prints the name
        #[arg(short = 'd', long)]
        detach: bool,
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(short = 't', long)]
        tty: bool,
        container: String,
    },
    /// Stop running containers: their stop signal (the image's StopSignal or SIGTERM),
    /// then SIGKILL after the timeout
    Stop {
        /// Seconds to wait before SIGKILL
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to running containers (default SIGKILL)
    Kill {
        #[arg(short = 's', long = "signal", default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers and start them again in the background, keeping their read-write layer
    Restart {
        /// Seconds to wait before SIGKILL
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait until containers stop; print their exit statuses
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Freeze every process of running containers (cgroup freezer)
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Rename a container
    Rename { container: String, new_name: String },
    /// The processes of a running container, as the host's `ps` shows them (default -ef)
    Top {
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "PS OPTIONS")]
        ps_args: Vec<String>,
    },
    /// CPU, memory, network, block I/O and pids of containers, from their cgroups
    Stats {
        #[command(flatten)]
        args: manage::StatsArgs,
    },
    /// Attach to a detached container's output (and its stdin, if started with -i)
    Attach {
        #[command(flatten)]
        args: attach::AttachArgs,
    },
    /// Print a container's output (stdout and stderr), kept in its log
    Logs {
        #[command(flatten)]
        args: logs::LogsArgs,
    },
    /// A detached container's monitor (started by run -d, start -d, restart)
    #[command(hide = true)]
    Monitor { container: String },
    /// Run a command in a running container's namespaces and cgroups
    Exec {
        #[command(flatten)]
        args: containers::ExecArgs,
    },
    /// List running containers (-a: all)
    Ps {
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: images::ListFormat,
    },
    /// Remove containers (a running one only with -f, which kills it)
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        /// Remove the containers' anonymous volumes too
        #[arg(short = 'v', long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Manage networks: create, ls, rm, inspect
    Network {
        #[command(subcommand)]
        command: network::NetworkCommand,
    },
    /// List a container's published ports, or the host address of one
    Port { container: String, port: Option<String> },
    /// Manage volumes: create, ls, inspect, rm, prune
    Volume {
        #[command(subcommand)]
        command: volumes::VolumeCommand,
    },
    /// Copy files between a container and the host (or a tar stream: -)
    Cp {
        #[command(flatten)]
        args: cp::CpArgs,
    },
    /// Write a container's filesystem as a tar archive
    Export {
        /// Output file; stdout when not given
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        container: String,
    },
    /// Show what a container changed: A added, C changed, D deleted
    Diff { container: String },
    /// Build an image from a Dockerfile, one layer per RUN, COPY and ADD, with a cache
    Build {
        #[command(flatten)]
        args: build::BuildArgs,
    },
    /// The build cache: `builder prune` removes its records and the layers only they kept
    Builder {
        #[command(subcommand)]
        command: build::BuilderCommand,
    },
    /// Make an image from a container's changes
    Commit {
        /// Commit message (the history entry's comment)
        #[arg(short = 'm', long)]
        message: Option<String>,
        #[arg(short = 'a', long)]
        author: Option<String>,
        /// Change the config: 'CMD ...', 'ENTRYPOINT ...', 'ENV K=V', 'WORKDIR D', 'USER U', 'LABEL K=V'
        #[arg(short = 'c', long = "change")]
        change: Vec<String>,
        container: String,
        reference: Option<String>,
    },
    /// Pull an image from a registry
    Pull {
        #[command(flatten)]
        args: registry::PullArgs,
    },
    /// Push an image to a registry
    Push {
        #[command(flatten)]
        args: registry::PushArgs,
    },
    /// Log in to a registry (credentials kept in auth.json, mode 0600)
    Login {
        #[command(flatten)]
        args: registry::LoginArgs,
    },
    /// Remove a registry's credentials
    Logout { registry: String },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SaveFormatArg {
    DockerArchive,
    Oci,
    OciArchive,
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
    // A container's `--init` is this program, from a sealed copy: it never gets here.
    strata_runtime::init::main_if_init();
    let cli = Cli::parse_from(drop_in_args(std::env::args_os().collect()));
    let root = cli.root;
    match cli.command {
        // Without -o, a name that is not a directory here is an image or a container.
        Command::Mount { options, foreground, log_file, mountpoint } if options.is_empty() && !mountpoint.is_dir() => {
            let reference = mountpoint.to_string_lossy().into_owned();
            let store = match images::open(&root) {
                Ok(s) => s,
                Err(e) => return fail(1, &format!("{e:#}")),
            };
            // A container (mounted read-write, as `run` does), else an image (read-only).
            if let Ok(c) = strata_store::container::find(&store, &reference) {
                return match containers::ensure_mounted(&store, &c) {
                    Ok(mnt) => {
                        println!("{}", mnt.display());
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(1, &format!("{e:#}")),
                };
            }
            match images::image_mount(&store, &reference) {
                Ok((branches, mnt)) => {
                    let code = daemon::mount(&[branches], foreground, log_file.as_deref(), &mnt);
                    if code == ExitCode::SUCCESS && !foreground {
                        println!("{}", mnt.display());
                    }
                    code
                }
                Err(e) => match e.downcast_ref::<strata_store::StoreError>() {
                    Some(strata_store::StoreError::NoSuchImage(_)) => {
                        fail(1, &format!("no such image or container: {reference}"))
                    }
                    _ => fail(1, &format!("{e:#}")),
                },
            }
        }
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
        Command::Login { args } => {
            init_cli_logging();
            registry::cmd_login(&args).map_or_else(|e| fail(1, &format!("{e:#}")), |()| ExitCode::SUCCESS)
        }
        Command::Logout { registry } => {
            init_cli_logging();
            registry::cmd_logout(&registry).map_or_else(|e| fail(1, &format!("{e:#}")), |()| ExitCode::SUCCESS)
        }
        store_command => {
            init_cli_logging();
            match store_cmd(&root, store_command) {
                Ok(code) => code,
                // The runtime failed before or around the command: 125, as Docker's.
                Err(e) if e.downcast_ref::<strata_runtime::RuntimeError>().is_some() => {
                    fail(strata_runtime::EXIT_SETUP as u8, &format!("{e:#}"))
                }
                Err(e) => fail(1, &format!("{e:#}")),
            }
        }
    }
}

/// Warnings (an xattr a layer could not carry, say) go to stderr.
fn init_cli_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(daemon::log_filter())
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

fn store_cmd(root: &Path, command: Command) -> anyhow::Result<ExitCode> {
    let store = images::open(root)?;
    match command {
        Command::Load { input } => images::cmd_load(&store, input.as_deref())?,
        Command::Import { source, reference } => images::cmd_import(&store, &source, &reference)?,
        Command::Save { output, format, images } => {
            let format = match format {
                SaveFormatArg::DockerArchive => strata_store::save::SaveFormat::DockerArchive,
                SaveFormatArg::Oci => strata_store::save::SaveFormat::Oci,
                SaveFormatArg::OciArchive => strata_store::save::SaveFormat::OciArchive,
            };
            images::cmd_save(&store, &images, output.as_deref(), format)?
        }
        Command::Images { format } => images::cmd_images(&store, format)?,
        Command::Inspect { images } => images::cmd_inspect(&store, &images)?,
        Command::History { image, no_trunc, format } => images::cmd_history(&store, &image, no_trunc, format)?,
        Command::Tag { source, target } => images::cmd_tag(&store, &source, &target)?,
        Command::Rmi { force, images } => images::cmd_rmi(&store, &images, force)?,
        Command::Check => {
            if !images::cmd_check(&store)? {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Create { args } => return containers::cmd_create(&store, &args),
        Command::Run { detach, rm, interactive, tty, args } => {
            return containers::cmd_run(&store, &args, rm, interactive, tty, detach);
        }
        Command::Start { detach, interactive, tty, container } => {
            return containers::cmd_start(&store, &container, interactive, tty, detach);
        }
        Command::Stop { time, containers: list } => return lifecycle::cmd_stop(&store, &list, time),
        Command::Kill { signal, containers: list } => return lifecycle::cmd_kill(&store, &list, &signal),
        Command::Restart { time, containers: list } => return lifecycle::cmd_restart(&store, &list, time),
        Command::Wait { containers: list } => return lifecycle::cmd_wait(&store, &list),
        Command::Logs { args } => return logs::cmd_logs(&store, &args),
        Command::Pause { containers: list } => return manage::cmd_pause(&store, &list),
        Command::Unpause { containers: list } => return manage::cmd_unpause(&store, &list),
        Command::Rename { container, new_name } => return manage::cmd_rename(&store, &container, &new_name),
        Command::Top { container, ps_args } => return manage::cmd_top(&store, &container, &ps_args),
        Command::Stats { args } => return manage::cmd_stats(&store, &args),
        Command::Attach { args } => return attach::cmd_attach(&store, &args),
        Command::Monitor { container } => return monitor::cmd_monitor(&store, &container),
        Command::Exec { args } => return containers::cmd_exec(&store, &args),
        Command::Ps { all, format } => return containers::cmd_ps(&store, all, format),
        Command::Rm { force, volumes, containers: list } => return containers::cmd_rm(&store, &list, force, volumes),
        Command::Volume { command } => return volumes::cmd_volume(&store, command),
        Command::Cp { args } => return cp::cmd_cp(&store, &args),
        Command::Export { output, container } => return cp::cmd_export(&store, &container, output.as_deref()),
        Command::Diff { container } => return containers::cmd_diff(&store, &container),
        Command::Network { command } => return network::cmd_network(&store, command),
        Command::Port { container, port } => return network::cmd_port(&store, &container, port.as_deref()),
        Command::Build { args } => return build::cmd_build(&store, &args),
        Command::Builder { command } => return build::cmd_builder(&store, command),
        Command::Commit { message, author, change, container, reference } => {
            return containers::cmd_commit(
                &store,
                &container,
                reference.as_deref(),
                message.as_deref(),
                author.as_deref(),
                &change,
            );
        }
        Command::Pull { args } => registry::cmd_pull(&store, &args)?,
        Command::Push { args } => registry::cmd_push(&store, &args)?,
        Command::Mount { .. }
        | Command::Umount { .. }
        | Command::Branches { .. }
        | Command::Login { .. }
        | Command::Logout { .. } => {
            unreachable!("union and login commands are handled in main")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Drop-in for fuse-overlayfs: called as `fuse-overlayfs` (a symlink) or as
/// `strata -o lowerdir=...,upperdir=...,workdir=... MOUNTPOINT`, it means `strata mount`.
fn drop_in_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let called_as = args.first().and_then(|a| Path::new(a).file_name().map(|n| n.to_os_string()));
    let first = args.get(1).map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let options_first = first.starts_with("-o") || first == "-f";
    let as_fuse_overlayfs = called_as.as_deref() == Some(std::ffi::OsStr::new("fuse-overlayfs"));
    if as_fuse_overlayfs && (first == "--version" || first == "-V") {
        // podman runs `fuse-overlayfs --version` and warns on every command if it fails;
        // the first line has fuse-overlayfs's own form.
        println!("fuse-overlayfs: version 1.13 (Strata {})", env!("CARGO_PKG_VERSION"));
        println!("FUSE library: none (Strata speaks the FUSE protocol itself)");
        std::process::exit(0);
    }
    if as_fuse_overlayfs || options_first {
        args.insert(1, "mount".into());
    }
    args
}

/// Prints `strata: MESSAGE` and returns `code`.
fn fail(code: u8, msg: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("strata: {msg}");
    ExitCode::from(code)
}
