//! The registry commands: pull, push, login, logout. One progress bar per blob when
//! stdout is a terminal, quiet otherwise.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressDrawTarget};
use strata_registry::auth::{self, Credentials};
use strata_registry::client::Client;
use strata_registry::{Options, Platform, PullOptions, PushCompression, PushFormat, PushOptions, Reference, Reporter};
use strata_store::{Progress, Store};

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// The platform to pick from a multi-platform image (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    #[command(flatten)]
    tls: TlsArg,
    /// Image reference: NAME[:TAG] or NAME@sha256:DIGEST (docker.io when no registry is named)
    reference: String,
}

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Manifest format
    #[arg(long, value_enum, default_value = "oci")]
    format: PushFormatArg,
    /// Layer compression
    #[arg(long, value_enum, default_value = "gzip")]
    compress: CompressArg,
    /// Upload each layer in requests of at most this size (bytes, or with k, m, g), for
    /// registries and proxies that limit a request's size; default: one request per layer
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    chunk_size: Option<u64>,
    #[command(flatten)]
    tls: TlsArg,
    /// The image in the store
    image: String,
    /// Where to push it (default: the image's own name)
    reference: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    #[arg(short = 'u', long = "username")]
    user: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    tls: TlsArg,
    registry: String,
}

/// `run` and `create`: whether an image missing from the store is pulled.
#[derive(clap::Args, Debug, Default)]
pub struct RunPullArgs {
    /// Pull the image: never (default: say how), missing (when not in the store), always
    #[arg(long, value_enum, value_name = "POLICY", default_value = "never")]
    pull: PullPolicy,
    /// With --pull: false accepts any certificate, and plain HTTP where HTTPS fails
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    #[default]
    Never,
    Missing,
    Always,
}

#[derive(clap::Args, Debug)]
pub struct TlsArg {
    /// false: accept any certificate, and plain HTTP where HTTPS fails
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PushFormatArg {
    Oci,
    V2s2,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CompressArg {
    Gzip,
    Zstd,
    None,
}

/// Bars for several blobs at once on stderr, drawn only when stdout is a terminal.
struct MultiBars {
    multi: Option<MultiProgress>,
}

impl MultiBars {
    fn new() -> MultiBars {
        let shown = std::io::stdout().is_terminal();
        MultiBars { multi: shown.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) }
    }
}

impl Reporter for MultiBars {
    fn blob(&self) -> Box<dyn Progress> {
        Box::new(crate::ui::Bars::in_group(self.multi.clone()))
    }
    fn note(&self, line: &str) {
        // Through the bars while they are drawn, so that neither tears the other.
        match &self.multi {
            Some(m) if !m.is_hidden() && m.println(line).is_ok() => {}
            _ => eprintln!("{line}"),
        }
    }
}

pub fn cmd_pull(store: &Store, args: &PullArgs) -> Result<()> {
    let reference = Reference::parse(&args.reference)?;
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let opts = PullOptions { net: Options { tls_verify: args.tls.tls_verify }, platform, ..Default::default() };
    let bars = MultiBars::new();
    let pulled = strata_registry::pull(store, &reference, &opts, &bars)?;
    bars.note(&format!(
        "Pulled {reference} (manifest {}): {} layer(s) downloaded, {} already present",
        pulled.manifest_digest, pulled.downloaded, pulled.present
    ));
    // stdout: the image ID alone, as podman prints it, for scripts.
    println!("{}", pulled.id);
    Ok(())
}

/// The image `run`/`create` use: from the store, pulled first as `--pull` says; an image
/// that is not there is never pulled silently.
pub fn image_for_run(store: &Store, reference: &str, args: &RunPullArgs) -> Result<strata_store::Image> {
    let found = match args.pull {
        PullPolicy::Always => Err(strata_store::StoreError::NoSuchImage(reference.into())),
        _ => store.image(reference),
    };
    match found {
        Err(strata_store::StoreError::NoSuchImage(_)) => {}
        other => return Ok(other?),
    }
    if args.pull == PullPolicy::Never {
        bail!(
            "no such image: {reference}: it is not in the store (Strata does not pull silently): \
             run `strata pull {reference}` first, or give --pull missing"
        );
    }
    let r = Reference::parse(reference)?;
    let opts = PullOptions { net: Options { tls_verify: args.tls_verify }, ..Default::default() };
    let bars = MultiBars::new();
    let pulled = strata_registry::pull(store, &r, &opts, &bars)?;
    bars.note(&format!("Pulled {r}: {} layer(s) downloaded, {} already present", pulled.downloaded, pulled.present));
    Ok(store.image(pulled.id.as_str())?)
}

pub fn cmd_push(store: &Store, args: &PushArgs) -> Result<()> {
    let dest_text = args.reference.as_deref().unwrap_or(&args.image);
    let dest = Reference::parse(dest_text)?;
    let opts = PushOptions {
        net: Options { tls_verify: args.tls.tls_verify },
        format: match args.format {
            PushFormatArg::Oci => PushFormat::Oci,
            PushFormatArg::V2s2 => PushFormat::DockerV2S2,
        },
        compression: match args.compress {
            CompressArg::Gzip => PushCompression::Gzip,
            CompressArg::Zstd => PushCompression::Zstd,
            CompressArg::None => PushCompression::None,
        },
        chunk_size: args.chunk_size,
        ..Default::default()
    };
    let pushed = strata_registry::push(store, &args.image, &dest, &opts, &MultiBars::new())?;
    println!("{}", pushed.manifest_digest);
    Ok(())
}

/// `4096`, `512k`, `64m`, `1g`.
fn parse_size(text: &str) -> Result<u64, String> {
    let (num, mult) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1 << 10),
        Some((i, 'm' | 'M')) => (&text[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    match num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!("'{text}': not a size (bytes, or with k, m, g)")),
    }
}

fn prompt(question: &str) -> Result<String> {
    eprint!("{question}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading from the terminal")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads a password from the terminal without echo.
fn prompt_hidden(question: &str) -> Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet).context("turning echo off")?;
    let answer = prompt(question);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    answer
}

pub fn cmd_login(args: &LoginArgs) -> Result<()> {
    let registry = auth::key_host(&args.registry).to_string();
    let interactive = std::io::stdin().is_terminal() && !args.password_stdin;
    let user = match &args.user {
        Some(u) => u.clone(),
        None if interactive => prompt("Username: ")?,
        None => bail!("no user name: give -u USER"),
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if interactive {
        prompt_hidden("Password: ")?
    } else {
        bail!("no password: use --password-stdin");
    };
    if user.is_empty() || password.is_empty() {
        bail!("user name and password must not be empty");
    }
    let creds = Credentials { user, password };
    // The registry checks the credentials before they are kept: /v2/ and, for a token
    // service, a token for a repository scope (which needs no such repository).
    let probe = Reference::parse(&format!("{registry}/strata-login-check"))?;
    Client::connect_with(&probe, false, Options { tls_verify: args.tls.tls_verify }, Some(creds.clone()))
        .with_context(|| format!("login to {registry} failed"))?;
    let path = auth::store(&registry, &creds)?;
    eprintln!("Login Succeeded ({})", path.display());
    Ok(())
}

pub fn cmd_logout(registry: &str) -> Result<()> {
    let registry = auth::key_host(registry).to_string();
    if !auth::remove(&registry)? {
        bail!("not logged in to {registry} (in {})", auth::auth_file().display());
    }
    eprintln!("Removed login credentials for {registry}");
    Ok(())
}
