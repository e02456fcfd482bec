//! Planning: the Dockerfile becomes stages of steps, every substitution done and every
//! input checked (instructions, base images, stages, context sources) before anything
//! is built, so that bad input changes nothing in the store. Each step carries the
//! image `config` object it leaves behind; executing a step only adds its layer.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use strata_store::Store;

use super::context::{ContextError, Item, Source, clean};
use super::dockerfile::{self, Dockerfile, Heredoc, Instruction, Vars, json_form, key_values};

/// A build input that cannot be built, with the Dockerfile line it comes from (0: the
/// command line, e.g. `--target`).
#[derive(Debug, thiserror::Error)]
#[error("{}{msg}", if *line > 0 { format!("Dockerfile line {line}: ") } else { String::new() })]
pub struct PlanError {
    pub line: usize,
    pub msg: String,
}

fn bad<T>(ins: &Instruction, msg: impl std::fmt::Display) -> Result<T, PlanError> {
    Err(PlanError { line: ins.line, msg: format!("{}: {msg}", ins.cmd) })
}

/// Where a stage starts.
#[derive(Clone, Debug)]
pub enum Base {
    Scratch,
    /// An image of the store: its ID.
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// Where COPY reads from.
#[derive(Clone, Debug)]
pub enum From {
    Context,
    Stage(usize),
    Image(String),
}

#[derive(Debug)]
pub enum Action {
    /// Only the config changes; `empty_layer: true` in the history.
    Meta,
    Run {
        argv: Vec<String>,
        env: Vec<String>,
    },
    Copy {
        from: From,
        sources: Vec<String>,
        heredocs: Vec<Heredoc>,
        dest: String,
        chown: Option<String>,
        chmod: Option<u32>,
        add: bool,
    },
}

#[derive(Debug)]
pub struct Step {
    pub line: usize,
    /// The instruction as written (for `STEP n/m:` lines).
    pub shown: String,
    /// The history entry's `created_by` (for COPY/ADD completed with the content hash).
    pub created_by: String,
    /// The instruction after substitution and what else it depends on: the cache key's text.
    pub key: String,
    /// The image's `config` after this step.
    pub config: Value,
    /// `MAINTAINER` sets the image's author.
    pub author: Option<String>,
    pub action: Action,
}

#[derive(Debug)]
pub struct Stage {
    pub name: Option<String>,
    pub shown: String,
    pub base: Base,
    /// The base's `config` (the starting point).
    pub base_config: Value,
    pub steps: Vec<Step>,
    /// Stages this one reads (FROM or COPY --from).
    pub needs: BTreeSet<usize>,
}

pub struct Plan {
    pub stages: Vec<Stage>,
    /// The stage to tag, and the ones it needs, in build order.
    pub order: Vec<usize>,
    /// Build args given on the command line that no ARG declared.
    pub unused_args: Vec<String>,
}

const META: &str = "/bin/sh -c #(nop) ";

pub const MANY: &str = "with more than one source, the destination must be a directory ending in /";

fn strs(v: &[String]) -> Value {
    json!(v)
}

/// Go's `%q` of a string slice, as Docker writes CMD and ENTRYPOINT in the history.
fn go_quoted(v: &[String]) -> String {
    let parts: Vec<String> = v.iter().map(|s| serde_json::to_string(s).unwrap_or_default()).collect();
    format!("[{}]", parts.join(" "))
}

fn list(v: Option<&Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Plans a build. `context` is `None` for a Dockerfile read from stdin.
pub fn plan(
    store: &Store,
    df: &Dockerfile,
    context: Option<&Source>,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<Plan, PlanError> {
    let esc = df.escape;
    let mut stages: Vec<Stage> = Vec::new();
    // ARGs before the first FROM: usable in FROM lines, and re-declared in stages.
    let mut global: Vars = Vars::new();
    let mut used_args: BTreeSet<String> = BTreeSet::new();
    // Per stage: ARGs in scope, whether CMD was set in the stage, the shell.
    let mut args: Vars = Vars::new();
    let mut cmd_set = false;
    let mut queue: std::collections::VecDeque<Instruction> = df.instructions.iter().cloned().collect();
    while let Some(ins) = queue.pop_front() {
        // Flags with effects Strata does not have are refused, not silently ignored.
        if matches!(ins.cmd.as_str(), "FROM" | "RUN")
            && let Some((f, _)) = ins.flags.first()
        {
            return bad(&ins, format!("the flag --{f} is not supported"));
        }
        let vars = |stage: &Stage, args: &Vars| -> Vars {
            // ENV wins over ARG of the same name.
            let mut v = args.clone();
            let cfg = stage.steps.last().map_or(&stage.base_config, |s| &s.config);
            for e in list(cfg.get("Env")) {
                if let Some((k, val)) = e.split_once('=') {
                    v.insert(k.to_string(), val.to_string());
                }
            }
            v
        };
        if ins.cmd == "FROM" {
            let w = dockerfile::words(&ins.rest, &global, esc).or_else(|e| bad(&ins, e))?;
            let (image, name) = match w.as_slice() {
                [i] => (i.clone(), None),
                [i, kw, n] if kw.eq_ignore_ascii_case("as") => (i.clone(), Some(n.to_ascii_lowercase())),
                _ => return bad(&ins, "expected FROM IMAGE [AS NAME]"),
            };
            if let Some(n) = &name
                && stages.iter().any(|s| s.name.as_ref() == Some(n))
            {
                return bad(&ins, format!("duplicate stage name '{n}'"));
            }
            let lower = image.to_ascii_lowercase();
            let (base, base_config, onbuild) = if lower == "scratch" {
                (Base::Scratch, json!({}), Vec::new())
            } else if let Some(i) = stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str())) {
                let cfg = stages[i].steps.last().map_or(&stages[i].base_config, |s| &s.config).clone();
                let ob = list(cfg.get("OnBuild"));
                (Base::Stage(i), cfg, ob)
            } else {
                let img = store.image(&image).map_err(|e| PlanError { line: ins.line, msg: format!("FROM: {e}") })?;
                let cfg = img.config.get("config").cloned().filter(|c| c.is_object()).unwrap_or_else(|| json!({}));
                let ob = list(cfg.get("OnBuild"));
                (Base::Image(img.id.to_string()), cfg, ob)
            };
            let mut base_config = base_config;
            let mut needs = BTreeSet::new();
            if let Base::Stage(i) = base {
                needs.insert(i);
            }
            // The base's triggers run now, and are not inherited.
            if base_config.get("OnBuild").is_some_and(|o| !o.is_null()) {
                base_config["OnBuild"] = Value::Null;
            }
            for t in onbuild.iter().rev() {
                let mut parsed = dockerfile::parse(t).map_err(|e| PlanError {
                    line: ins.line,
                    msg: format!("ONBUILD trigger '{t}' of the base image: {}", e.msg),
                })?;
                for mut tr in parsed.instructions.drain(..).rev() {
                    tr.line = ins.line;
                    queue.push_front(tr);
                }
            }
            stages.push(Stage { name, shown: ins.text(), base, base_config, steps: Vec::new(), needs });
            args = Vars::new();
            cmd_set = false;
            continue;
        }
        if ins.cmd == "ARG" && stages.is_empty() {
            for (k, v) in arg_decl(&ins, &global, esc)? {
                let value = build_args.get(&k).cloned().or(v).unwrap_or_default();
                used_args.insert(k.clone());
                global.insert(k, value);
            }
            continue;
        }
        let Some(stage) = stages.last_mut() else {
            return bad(&ins, "no FROM before it: a Dockerfile starts with FROM (ARG may come before)");
        };
        let vars = vars(stage, &args);
        let parent = stage.steps.last().map_or(&stage.base_config, |s| &s.config).clone();
        let mut config = parent.clone();
        let shell = {
            let s = list(parent.get("Shell"));
            if s.is_empty() { vec!["/bin/sh".to_string(), "-c".to_string()] } else { s }
        };
        let word = |text: &str| dockerfile::word(text, &vars, esc).or_else(|e| bad(&ins, e));
        let words = |text: &str| dockerfile::words(text, &vars, esc).or_else(|e| bad(&ins, e));
        let mut author = None;
        let mut action = Action::Meta;
        let created_by: String;
        match ins.cmd.as_str() {
            "RUN" => {
                let argv = match (json_form(&ins.rest), ins.heredocs.as_slice()) {
                    (Some(v), []) => v,
                    (_, [h]) if ins.rest.trim_start().starts_with("<<") && ins.rest.split_whitespace().count() == 1 => {
                        [shell.clone(), vec![h.body.clone()]].concat()
                    }
                    (_, hs) => {
                        // The shell reads the heredocs itself.
                        let mut script = ins.rest.clone();
                        for h in hs {
                            script.push('\n');
                            script.push_str(&h.body);
                            script.push_str(&h.name);
                        }
                        [shell.clone(), vec![script]].concat()
                    }
                };
                if argv.is_empty() {
                    return bad(&ins, "no command given");
                }
                let mut env = list(config.get("Env"));
                let mut build_env = Vec::new();
                for (k, v) in &args {
                    if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
                        build_env.push(format!("{k}={v}"));
                    }
                }
                // Docker's history shows the build args a RUN saw: `|2 A=1 B=2 /bin/sh -c ...`.
                created_by = if build_env.is_empty() {
                    argv.join(" ")
                } else {
                    format!("|{} {} {}", build_env.len(), build_env.join(" "), argv.join(" "))
                };
                env.extend(build_env);
                action = Action::Run { argv, env };
            }
            "COPY" | "ADD" => {
                let inputs = Inputs { store, context, global: &global, esc };
                let a = copy_action(&ins, &vars, &parent, &stages, &inputs)?;
                if let (Action::Copy { from: From::Stage(i), .. }, Some(stage)) = (&a, stages.last_mut()) {
                    stage.needs.insert(*i);
                }
                created_by = String::new(); // completed when executed, with the content hash
                action = a;
            }
            "ENV" => {
                let kv = key_values(&ins.rest, &vars, esc).or_else(|e| bad(&ins, e))?;
                let mut env = list(config.get("Env"));
                for (k, v) in &kv {
                    env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
                config["Env"] = strs(&env);
                let shown: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
                created_by = format!("{META} ENV {}", shown.join(" "));
            }
            "LABEL" => {
                let kv = key_values(&ins.rest, &vars, esc).or_else(|e| bad(&ins, e))?;
                if !config["Labels"].is_object() {
                    config["Labels"] = json!({});
                }
                for (k, v) in &kv {
                    config["Labels"][k] = json!(v);
                }
                let shown: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
                created_by = format!("{META} LABEL {}", shown.join(" "));
            }
            "ARG" => {
                let mut shown = Vec::new();
                for (k, v) in arg_decl(&ins, &vars, esc)? {
                    used_args.insert(k.clone());
                    let value = build_args.get(&k).cloned().or(v.clone()).or_else(|| global.get(&k).cloned());
                    shown.push(match &v {
                        Some(d) => format!("{k}={d}"),
                        None => k.clone(),
                    });
                    args.insert(k, value.unwrap_or_default());
                }
                created_by = format!("{META} ARG {}", shown.join(" "));
            }
            "WORKDIR" => {
                let w = word(&ins.rest)?;
                if w.is_empty() {
                    return bad(&ins, "needs a directory");
                }
                let cur = parent.get("WorkingDir").and_then(|w| w.as_str()).filter(|w| !w.is_empty()).unwrap_or("/");
                let joined = if w.starts_with('/') { w } else { format!("{cur}/{w}") };
                let dir = format!("/{}", clean(&joined));
                config["WorkingDir"] = json!(dir);
                created_by = format!("/bin/sh -c #(nop) WORKDIR {dir}");
            }
            "USER" => {
                let u = word(&ins.rest)?;
                if u.is_empty() {
                    return bad(&ins, "needs a user");
                }
                config["User"] = json!(u);
                created_by = format!("{META} USER {u}");
            }
            "CMD" | "ENTRYPOINT" => {
                let v = match json_form(&ins.rest) {
                    Some(v) => v,
                    None => [shell.clone(), vec![ins.rest.clone()]].concat(),
                };
                if ins.cmd == "CMD" {
                    config["Cmd"] = strs(&v);
                    cmd_set = true;
                } else {
                    config["Entrypoint"] = strs(&v);
                    // A CMD inherited from the base makes no sense with a new ENTRYPOINT.
                    if !cmd_set {
                        config["Cmd"] = Value::Null;
                    }
                }
                created_by = format!("{META} {} {}", ins.cmd, go_quoted(&v));
            }
            "SHELL" => {
                let v = json_form(&ins.rest).filter(|v| !v.is_empty()).ok_or_else(|| PlanError {
                    line: ins.line,
                    msg: "SHELL: needs the JSON form, e.g. [\"/bin/sh\", \"-c\"]".into(),
                })?;
                config["Shell"] = strs(&v);
                created_by = format!("{META} SHELL [{}]", v.join(" "));
            }
            "EXPOSE" => {
                let mut ports =
                    config.get("ExposedPorts").filter(|p| p.is_object()).cloned().unwrap_or_else(|| json!({}));
                let w = words(&ins.rest)?;
                for p in &w {
                    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    if num.parse::<u16>().is_err()
                        || !matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp")
                    {
                        return bad(&ins, format!("'{p}': expected PORT or PORT/PROTOCOL"));
                    }
                    ports[format!("{num}/{}", proto.to_ascii_lowercase())] = json!({});
                }
                config["ExposedPorts"] = ports;
                created_by = format!("{META} EXPOSE {}", w.join(" "));
            }
            "VOLUME" => {
                let v = match json_form(&ins.rest) {
                    Some(v) => v.iter().map(|s| word(s)).collect::<Result<Vec<_>, _>>()?,
                    None => words(&ins.rest)?,
                };
                if v.is_empty() {
                    return bad(&ins, "needs a path");
                }
                let mut vols = config.get("Volumes").filter(|p| p.is_object()).cloned().unwrap_or_else(|| json!({}));
                for p in &v {
                    vols[p] = json!({});
                }
                config["Volumes"] = vols;
                created_by = format!("{META} VOLUME [{}]", v.join(" "));
            }
            "STOPSIGNAL" => {
                let s = word(&ins.rest)?;
                config["StopSignal"] = json!(s);
                created_by = format!("{META} STOPSIGNAL {s}");
            }
            "MAINTAINER" => {
                author = Some(ins.rest.clone());
                created_by = format!("{META} MAINTAINER {}", ins.rest);
            }
            "ONBUILD" => {
                let (first, _) = ins.rest.split_once(char::is_whitespace).unwrap_or((&ins.rest, ""));
                let first = first.to_ascii_uppercase();
                if matches!(first.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return bad(&ins, format!("{first} is not allowed as an ONBUILD trigger"));
                }
                dockerfile::parse(&ins.rest)
                    .map_err(|e| PlanError { line: ins.line, msg: format!("ONBUILD: {}", e.msg) })?;
                let mut ob = list(config.get("OnBuild"));
                ob.push(ins.rest.clone());
                config["OnBuild"] = strs(&ob);
                created_by = format!("{META} ONBUILD {}", ins.rest);
            }
            "HEALTHCHECK" => {
                config["Healthcheck"] = healthcheck(&ins)?;
                created_by = format!("{META} HEALTHCHECK {}", ins.rest);
            }
            other => return bad(&ins, format!("{other} is not supported")),
        }
        let key = format!(
            "{}\0{}\0{}\0{:?}",
            ins.cmd,
            serde_json::to_string(&config).unwrap_or_default(),
            created_by,
            action
        );
        let stage = stages.last_mut().ok_or_else(|| PlanError { line: ins.line, msg: "no stage".into() })?;
        stage.steps.push(Step { line: ins.line, shown: ins.text(), created_by, key, config, author, action });
    }
    if stages.is_empty() {
        return Err(PlanError { line: 1, msg: "no FROM instruction: nothing to build".into() });
    }
    let last = match target {
        None => stages.len() - 1,
        Some(t) => {
            let t = t.to_ascii_lowercase();
            stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.as_str()))
                .ok_or_else(|| PlanError { line: 0, msg: format!("--target {t}: no stage of that name") })?
        }
    };
    // The target and what it needs, transitively, in Dockerfile order.
    let mut want = BTreeSet::from([last]);
    for i in (0..=last).rev() {
        if want.contains(&i) {
            want.extend(stages[i].needs.iter().copied());
        }
    }
    let unused_args = build_args.keys().filter(|k| !used_args.contains(*k)).cloned().collect();
    Ok(Plan { stages, order: want.into_iter().collect(), unused_args })
}

/// What the plan reads besides the Dockerfile.
struct Inputs<'a> {
    store: &'a Store,
    context: Option<&'a Source>,
    /// ARGs before the first FROM (`--from` may name them).
    global: &'a Vars,
    esc: char,
}

/// A COPY or ADD: sources checked (the context's now), destination resolved against
/// the WORKDIR of `parent`.
fn copy_action(
    ins: &Instruction,
    vars: &Vars,
    parent: &Value,
    stages: &[Stage],
    inputs: &Inputs<'_>,
) -> Result<Action, PlanError> {
    let word = |text: &str| dockerfile::word(text, vars, inputs.esc).or_else(|e| bad(ins, e));
    let words = |text: &str| dockerfile::words(text, vars, inputs.esc).or_else(|e| bad(ins, e));
    let add = ins.cmd == "ADD";
    let mut w = match json_form(&ins.rest) {
        Some(v) => v.iter().map(|s| word(s)).collect::<Result<Vec<_>, _>>()?,
        None => words(&ins.rest)?,
    };
    if w.len() < 2 {
        return bad(ins, "needs at least a source and a destination");
    }
    let dest_raw = w.pop().unwrap_or_default();
    for (f, _) in &ins.flags {
        if !matches!(f.as_str(), "from" | "chown" | "chmod" | "link") {
            return bad(ins, format!("the flag --{f} is not supported"));
        }
    }
    let from = match ins.flag("from") {
        None => From::Context,
        Some(f) => {
            // The stage's args and env, then the global args.
            let mut scope = inputs.global.clone();
            scope.extend(vars.clone());
            let f = dockerfile::word(f, &scope, inputs.esc).or_else(|e| bad(ins, e))?.to_ascii_lowercase();
            let here = stages.len() - 1;
            if let Some(i) = stages[..here].iter().position(|s| s.name.as_deref() == Some(f.as_str())) {
                From::Stage(i)
            } else if let Ok(i) = f.parse::<usize>() {
                if i >= here {
                    return bad(ins, format!("--from={i}: no such stage before this one"));
                }
                From::Stage(i)
            } else {
                match inputs.store.image(&f) {
                    Ok(img) => From::Image(img.id.to_string()),
                    Err(_) => {
                        return bad(ins, format!("--from={f}: no such stage, and no such image"));
                    }
                }
            }
        }
    };
    // Heredoc sources are files made from the Dockerfile's text.
    let mut heredocs = Vec::new();
    let mut sources = Vec::new();
    for s in w {
        if let Some(name) = s.strip_prefix("<<") {
            let name = name.trim_start_matches('-').trim_matches(['"', '\'']);
            let h = ins
                .heredocs
                .iter()
                .find(|h| h.name == name)
                .ok_or_else(|| PlanError { line: ins.line, msg: format!("heredoc {name} not found") })?;
            let body = if h.expand {
                dockerfile::expand_only(&h.body, vars, inputs.esc).or_else(|e| bad(ins, e))?
            } else {
                h.body.clone()
            };
            heredocs.push(Heredoc { name: h.name.clone(), body, expand: h.expand });
            continue;
        }
        if s.contains("://") || s.starts_with("git@") {
            if add {
                return bad(
                    ins,
                    format!(
                        "{s}: remote sources are not supported (builds have no network); put the file in the context"
                    ),
                );
            }
            return bad(ins, format!("{s}: COPY takes no URLs"));
        }
        sources.push(s);
    }
    if sources.len() + heredocs.len() > 1 && !dest_raw.ends_with('/') {
        return bad(ins, MANY);
    }
    // Sources in the context must exist now, and stay inside it.
    if matches!(from, From::Context) {
        match inputs.context {
            Some(ctx) => {
                let mut n = heredocs.len();
                for s in &sources {
                    n += ctx.items(s).or_else(|e: ContextError| bad(ins, e))?.len();
                }
                if n > 1 && !dest_raw.ends_with('/') {
                    return bad(ins, MANY);
                }
            }
            None if !sources.is_empty() => {
                return bad(ins, "no build context (the Dockerfile came from stdin)");
            }
            None => {}
        }
    }
    let workdir = parent.get("WorkingDir").and_then(|w| w.as_str()).unwrap_or("/").to_string();
    let mut dest = if dest_raw.starts_with('/') { dest_raw.clone() } else { format!("{workdir}/{dest_raw}") };
    let dir_form = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
    dest = format!("/{}", clean(&dest));
    if dir_form && dest != "/" {
        dest.push('/');
    }
    let chmod = match ins.flag("chmod") {
        Some(m) => Some(u32::from_str_radix(m, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| PlanError {
            line: ins.line,
            msg: format!("{}: --chmod={m}: not an octal mode", ins.cmd),
        })?),
        None => None,
    };
    let chown = ins.flag("chown").map(&word).transpose()?;
    Ok(Action::Copy { from, sources, heredocs, dest, chown, chmod, add })
}

/// `ARG name[=default] ...`
fn arg_decl(ins: &Instruction, vars: &Vars, esc: char) -> Result<Vec<(String, Option<String>)>, PlanError> {
    let w = dockerfile::words(&ins.rest, vars, esc).or_else(|e| bad(ins, e))?;
    if w.is_empty() {
        return bad(ins, "needs a name");
    }
    Ok(w.into_iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a, None),
        })
        .collect())
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=..] CMD ...`, as Docker stores it.
fn healthcheck(ins: &Instruction) -> Result<Value, PlanError> {
    let rest = ins.rest.trim();
    if rest.eq_ignore_ascii_case("none") {
        return Ok(json!({"Test": ["NONE"]}));
    }
    let (kw, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !kw.eq_ignore_ascii_case("cmd") || cmd.trim().is_empty() {
        return bad(ins, "expected NONE or CMD COMMAND");
    }
    let test = match json_form(cmd) {
        Some(v) => [vec!["CMD".to_string()], v].concat(),
        None => vec!["CMD-SHELL".to_string(), cmd.trim().to_string()],
    };
    let mut h = json!({ "Test": test });
    for (f, v) in &ins.flags {
        let field = match f.as_str() {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                h["Retries"] = json!(v.parse::<u64>().or_else(|_| bad(ins, format!("--retries={v}: not a number")))?);
                continue;
            }
            other => return bad(ins, format!("unknown flag --{other}")),
        };
        let d = humantime::parse_duration(v).or_else(|e| bad(ins, format!("--{f}={v}: {e}")))?;
        h[field] = json!(d.as_nanos() as u64);
    }
    Ok(h)
}

/// A COPY item list for a source of the context or of a stage's root.
pub fn items(src: &Source, sources: &[String]) -> Result<Vec<Item>, ContextError> {
    let mut all = Vec::new();
    for s in sources {
        all.extend(src.items(s)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(text: &str, build_args: &[(&str, &str)]) -> Result<Plan, PlanError> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let ctx_dir = dir.path().join("ctx");
        std::fs::create_dir(&ctx_dir).unwrap();
        std::fs::write(ctx_dir.join("$FOO"), "").unwrap();
        let ctx = Source::context(&ctx_dir).unwrap();
        let args = build_args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        plan(&store, &dockerfile::parse(text).unwrap(), Some(&ctx), &args, None)
    }

    fn env(step: &Step) -> Vec<String> {
        list(step.config.get("Env"))
    }

    #[test]
    fn environment_replacement_as_the_reference_shows() {
        // The reference's example: WORKDIR ${FOO} is /bar, COPY \$FOO copies "$FOO".
        let p = planned("FROM scratch\nENV FOO=/bar\nWORKDIR ${FOO}\nCOPY \\$FOO /quux\n", &[]).unwrap();
        let steps = &p.stages[0].steps;
        assert_eq!(steps[1].config["WorkingDir"], "/bar");
        match &steps[2].action {
            Action::Copy { sources, dest, .. } => {
                assert_eq!((sources.as_slice(), dest.as_str()), (&["$FOO".to_string()][..], "/quux"))
            }
            other => panic!("{other:?}"),
        }
        // "ENV abc=bye def=$abc": def gets the value from before the instruction.
        let p = planned("FROM scratch\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n", &[]).unwrap();
        assert_eq!(env(&p.stages[0].steps[2]), ["abc=bye", "def=hello", "ghi=bye"]);
        // LABEL, like ENV, also takes the old `KEY VALUE` form.
        let p = planned("FROM scratch\nLABEL description This text illustrates\n", &[]).unwrap();
        assert_eq!(p.stages[0].steps[0].config["Labels"]["description"], "This text illustrates");
    }

    #[test]
    fn arg_scope_as_the_reference_shows() {
        // An ARG before FROM is usable in FROM only, until a stage declares it again.
        let text =
            "ARG CODE_VERSION=latest\nFROM scratch\nENV A=${CODE_VERSION}\nARG CODE_VERSION\nENV B=${CODE_VERSION}\n";
        let p = planned(text, &[]).unwrap();
        assert_eq!(env(&p.stages[0].steps[2]), ["A=", "B=latest"]);
        // ENV wins over ARG; a build arg overrides a default; an unused build arg is reported.
        let text = "FROM scratch\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\nARG X=1\nENV Y=$X\n";
        let p = planned(text, &[("X", "2"), ("UNUSED", "u")]).unwrap();
        assert_eq!(env(&p.stages[0].steps[3]), ["CONT_IMG_VER=v1.0.0", "Y=2"]);
        assert_eq!(p.unused_args, ["UNUSED"]);
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_and_shell_changes_the_shell_form() {
        let p = planned(
            "FROM scratch AS base\nCMD [\"a\"]\nFROM base\nENTRYPOINT [\"e\"]\nSHELL [\"/bin/bash\", \"-c\"]\nCMD run me\n",
            &[],
        )
        .unwrap();
        let s = &p.stages[1].steps;
        assert_eq!(s[0].config["Cmd"], Value::Null);
        assert_eq!(s[2].config["Cmd"], json!(["/bin/bash", "-c", "run me"]));
        assert_eq!(s[2].created_by, "/bin/sh -c #(nop)  CMD [\"/bin/bash\" \"-c\" \"run me\"]");
    }

    #[test]
    fn only_needed_stages_are_planned_to_run() {
        let e = plan(
            &Store::open(&tempfile::tempdir().unwrap().path().join("s")).unwrap(),
            &dockerfile::parse("FROM scratch AS a\n").unwrap(),
            None,
            &BTreeMap::new(),
            Some("b"),
        )
        .err()
        .unwrap();
        assert_eq!(e.to_string(), "--target b: no stage of that name");
        let text = "FROM scratch AS a\nFROM scratch AS b\nFROM a AS c\nFROM scratch\nCOPY --from=c / /\n";
        assert_eq!(planned(text, &[]).unwrap().order, [0, 2, 3]);
        let e = planned("FROM scratch\nCOPY --from=later / /\nFROM scratch AS later\n", &[]).err().unwrap();
        assert_eq!(e.line, 2);
    }
}
