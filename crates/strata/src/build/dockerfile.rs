//! The Dockerfile language, as the Dockerfile reference defines it: parser directives,
//! comments, line continuations, heredocs, instructions with their `--flags`, and the
//! shell-like word processing (quotes, escapes, `$VAR`, `${VAR:-default}`, ...) that the
//! instructions supporting environment replacement use.
//!
//! No crate was used: `dockerfile-parser` (the one Rust parser) has no heredocs, no
//! `${VAR:+alt}` / `${VAR-x}` forms and no quote processing as Docker's lexer does it.

use std::collections::BTreeMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
#[error("Dockerfile line {line}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

fn err<T>(line: usize, msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { line, msg: msg.into() })
}

/// A heredoc attached to an instruction (`RUN <<EOF`, `COPY <<EOF /dest`).
#[derive(Clone, Debug, PartialEq)]
pub struct Heredoc {
    pub name: String,
    pub body: String,
    /// The delimiter was unquoted: `$VAR` in the body is expanded (for COPY).
    pub expand: bool,
}

/// One instruction, continuation lines joined, flags split off.
#[derive(Clone, Debug, PartialEq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Upper case: `RUN`, `COPY`, ...
    pub cmd: String,
    /// `--name=value` flags in order (`--link` alone gives an empty value).
    pub flags: Vec<(String, String)>,
    /// What follows the flags, continuations joined, heredoc bodies not included.
    pub rest: String,
    pub heredocs: Vec<Heredoc>,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The instruction as written, continuations joined (for messages and history).
    pub fn text(&self) -> String {
        let mut s = self.cmd.clone();
        for (n, v) in &self.flags {
            s.push_str(&if v.is_empty() { format!(" --{n}") } else { format!(" --{n}={v}") });
        }
        if !self.rest.is_empty() {
            s.push(' ');
            s.push_str(&self.rest);
        }
        s
    }
}

#[derive(Debug, PartialEq)]
pub struct Dockerfile {
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

const KNOWN: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

/// Instructions whose flags are split off (others keep `--` text as arguments).
const WITH_FLAGS: &[&str] = &["FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"];

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: `# key=value` lines at the very top; the first other line
    // (comment, blank, instruction) ends them.
    while i < lines.len() {
        let Some(body) = lines[i].trim().strip_prefix('#') else { break };
        let Some((k, v)) = body.split_once('=') else { break };
        let k = k.trim().to_ascii_lowercase();
        if k.is_empty() || k.contains(char::is_whitespace) {
            break;
        }
        match k.as_str() {
            "escape" => {
                escape = match v.trim() {
                    "\\" => '\\',
                    "`" => '`',
                    other => return err(i + 1, format!("invalid escape directive '{other}': use \\ or `")),
                }
            }
            "syntax" | "check" => {}
            _ => break,
        }
        i += 1;
    }
    let mut out = Vec::new();
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        // Join continuation lines; comment and blank lines inside are dropped.
        let mut joined = String::new();
        let mut cur = line.to_string();
        loop {
            match strip_continuation(&cur, escape) {
                Some(head) => {
                    joined.push_str(head);
                    i += 1;
                    while i < lines.len() && {
                        let t = lines[i].trim_start();
                        t.starts_with('#') || t.is_empty()
                    } {
                        i += 1;
                    }
                    if i >= lines.len() {
                        break;
                    }
                    cur = lines[i].to_string();
                }
                None => {
                    joined.push_str(&cur);
                    i += 1;
                    break;
                }
            }
        }
        let joined = joined.trim();
        let (word, rest) = joined.split_once(char::is_whitespace).unwrap_or((joined, ""));
        let cmd = word.to_ascii_uppercase();
        if !KNOWN.contains(&cmd.as_str()) {
            return err(start + 1, format!("unknown instruction: {word}"));
        }
        let (flags, rest) =
            if WITH_FLAGS.contains(&cmd.as_str()) { split_flags(rest.trim()) } else { (Vec::new(), rest.trim()) };
        let mut ins = Instruction { line: start + 1, cmd, flags, rest: rest.to_string(), heredocs: Vec::new() };
        if matches!(ins.cmd.as_str(), "RUN" | "COPY" | "ADD") {
            for (name, strip, expand) in heredoc_markers(&ins.rest) {
                let mut body = String::new();
                loop {
                    if i >= lines.len() {
                        return err(start + 1, format!("heredoc '{name}' is not terminated"));
                    }
                    let l = if strip { lines[i].trim_start_matches('\t') } else { lines[i] };
                    i += 1;
                    if l == name {
                        break;
                    }
                    body.push_str(l);
                    body.push('\n');
                }
                ins.heredocs.push(Heredoc { name, body, expand });
            }
        }
        out.push(ins);
    }
    Ok(Dockerfile { escape, instructions: out })
}

/// The line without its trailing escape character (and the whitespace after it), if
/// it continues on the next line.
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end();
    t.strip_suffix(escape)
}

/// Leading `--name=value` words.
fn split_flags(mut rest: &str) -> (Vec<(String, String)>, &str) {
    let mut flags = Vec::new();
    while let Some(f) = rest.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let (word, after) = f.split_at(end);
        let (n, v) = word.split_once('=').unwrap_or((word, ""));
        flags.push((n.to_ascii_lowercase(), v.to_string()));
        rest = after.trim_start();
    }
    (flags, rest)
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"`: name, strip tabs, expand variables.
fn heredoc_markers(rest: &str) -> Vec<(String, bool, bool)> {
    let mut v = Vec::new();
    let mut s = rest;
    while let Some(p) = s.find("<<") {
        let mut t = &s[p + 2..];
        let strip = t.starts_with('-');
        if strip {
            t = &t[1..];
        }
        let quote = t.chars().next().filter(|c| *c == '"' || *c == '\'');
        if let Some(q) = quote {
            t = &t[1..];
            if let Some(end) = t.find(q) {
                v.push((t[..end].to_string(), strip, false));
                s = &t[end + 1..];
                continue;
            }
            break;
        }
        let end = t.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(t.len());
        if end > 0 && t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            v.push((t[..end].to_string(), strip, true));
        }
        s = &t[end..];
    }
    v
}

/// The JSON (exec) form, if the text is a JSON array of strings.
pub fn json_form(rest: &str) -> Option<Vec<String>> {
    let t = rest.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// Variables in scope for substitution.
pub type Vars = BTreeMap<String, String>;

/// Docker's word processing: splits `input` into words at unquoted whitespace, removes
/// quotes and escapes, and expands variables (not inside single quotes).
pub fn words(input: &str, vars: &Vars, escape: char) -> Result<Vec<String>, String> {
    Lexer { chars: input.chars().collect(), pos: 0, vars, escape }.words(true)
}

/// One word: the whole text processed, whitespace kept (WORKDIR, USER, `ENV k v`).
pub fn word(input: &str, vars: &Vars, escape: char) -> Result<String, String> {
    Ok(Lexer { chars: input.chars().collect(), pos: 0, vars, escape }.words(false)?.concat())
}

/// Expands variables only, quotes and escapes other than before `$` kept (heredoc bodies).
pub fn expand_only(input: &str, vars: &Vars, escape: char) -> Result<String, String> {
    let mut lx = Lexer { chars: input.chars().collect(), pos: 0, vars, escape };
    let mut out = String::new();
    while let Some(c) = lx.next() {
        if c == escape && lx.peek() == Some('$') {
            out.push('$');
            lx.pos += 1;
        } else if c == '$' {
            out.push_str(&lx.dollar()?);
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    vars: &'a Vars,
    escape: char,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn words(&mut self, split: bool) -> Result<Vec<String>, String> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        while let Some(c) = self.next() {
            if split && c.is_whitespace() {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                continue;
            }
            in_word = true;
            if c == self.escape {
                match self.next() {
                    Some(n) => cur.push(n),
                    None => cur.push(c),
                }
            } else if c == '\'' {
                loop {
                    match self.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err("unexpected end of text: missing '".into()),
                    }
                }
            } else if c == '"' {
                loop {
                    match self.next() {
                        Some('"') => break,
                        Some('$') => cur.push_str(&self.dollar()?),
                        Some(n) if n == self.escape => match self.peek() {
                            Some(p) if p == '"' || p == '$' || p == self.escape => {
                                cur.push(p);
                                self.pos += 1;
                            }
                            _ => cur.push(n),
                        },
                        Some(n) => cur.push(n),
                        None => return Err("unexpected end of text: missing \"".into()),
                    }
                }
            } else if c == '$' {
                cur.push_str(&self.dollar()?);
            } else {
                cur.push(c);
            }
        }
        if in_word {
            words.push(cur);
        }
        Ok(words)
    }

    /// After a `$`: `name`, `{name}`, `{name:-word}`, `{name:+word}`, `{name-word}`,
    /// `{name+word}`, `{name:?msg}`, `{name?msg}`. Anything else is a literal `$`.
    fn dollar(&mut self) -> Result<String, String> {
        if self.peek() == Some('{') {
            self.pos += 1;
            let name = self.name();
            if name.is_empty() {
                return Err("bad substitution: missing variable name after ${".into());
            }
            let op: String = match self.peek() {
                Some('}') => {
                    self.pos += 1;
                    return Ok(self.vars.get(&name).cloned().unwrap_or_default());
                }
                Some(':') => {
                    self.pos += 1;
                    match self.next() {
                        Some(c @ ('-' | '+' | '?')) => format!(":{c}"),
                        _ => return Err(format!("bad substitution: unsupported modifier in ${{{name}:...}}")),
                    }
                }
                Some(c @ ('-' | '+' | '?')) => {
                    self.pos += 1;
                    c.to_string()
                }
                _ => return Err(format!("bad substitution: missing }} after ${{{name}")),
            };
            // The word runs to the matching `}`, and is processed itself.
            let start = self.pos;
            let mut depth = 0;
            loop {
                match self.next() {
                    Some('{') => depth += 1,
                    Some('}') if depth == 0 => break,
                    Some('}') => depth -= 1,
                    Some(c) if c == self.escape => {
                        self.pos += 1;
                    }
                    Some(_) => {}
                    None => return Err(format!("bad substitution: missing }} after ${{{name}")),
                }
            }
            let raw: String = self.chars[start..self.pos - 1].iter().collect();
            let value = self.vars.get(&name);
            let set = value.is_some();
            let nonempty = value.is_some_and(|v| !v.is_empty());
            let sub = || word(&raw, self.vars, self.escape);
            return match op.as_str() {
                ":-" => {
                    if nonempty {
                        Ok(value.cloned().unwrap_or_default())
                    } else {
                        sub()
                    }
                }
                "-" => {
                    if set {
                        Ok(value.cloned().unwrap_or_default())
                    } else {
                        sub()
                    }
                }
                ":+" => {
                    if nonempty {
                        sub()
                    } else {
                        Ok(String::new())
                    }
                }
                "+" => {
                    if set {
                        sub()
                    } else {
                        Ok(String::new())
                    }
                }
                ":?" if !nonempty => Err(format!("{name}: {}", sub()?)),
                "?" if !set => Err(format!("{name}: {}", sub()?)),
                _ => Ok(value.cloned().unwrap_or_default()),
            };
        }
        let name = self.name();
        if name.is_empty() {
            return Ok("$".into());
        }
        Ok(self.vars.get(&name).cloned().unwrap_or_default())
    }

    fn name(&mut self) -> String {
        let mut n = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                n.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        n
    }
}

/// `KEY=VALUE ...` pairs (ENV, LABEL), or the old `KEY VALUE` form: one pair, the value
/// the rest of the line.
pub fn key_values(rest: &str, vars: &Vars, escape: char) -> Result<Vec<(String, String)>, String> {
    let all = words(rest, vars, escape)?;
    // As Docker tells the forms: by the first word, quotes removed.
    if !all.first().is_some_and(|w| w.contains('=')) {
        let (k, v) = rest.trim().split_once(char::is_whitespace).ok_or("needs a value")?;
        return Ok(vec![(k.to_string(), word(v.trim(), vars, escape)?)]);
    }
    let mut out = Vec::new();
    for w in all {
        let (k, v) = w.split_once('=').ok_or_else(|| format!("'{w}': expected KEY=VALUE"))?;
        if k.is_empty() {
            return Err(format!("'{w}': empty key"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vars {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn directives_comments_and_continuations() {
        // From the reference: "# escape=`" and a Windows-style continuation.
        let df = parse("# escape=`\n\nFROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.instructions[1].rest, "testfile.txt c:\\");
        assert_eq!(df.instructions[2].rest, "dir c:\\");
        // With the default escape, a trailing backslash continues the line.
        let df = parse("# syntax=docker/dockerfile:1\nFROM a\nRUN echo hello \\\n# comment\n  world\n").unwrap();
        assert_eq!(df.escape, '\\');
        assert_eq!(df.instructions[1].rest, "echo hello   world");
        assert_eq!(df.instructions[1].line, 3);
        // A directive after a comment is a comment.
        let df = parse("# about\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(df.escape, '\\');
        // Comment lines inside a RUN are removed, "#" inside an argument is not a comment.
        let df = parse("RUN echo hello \\\n# comment\nworld # not a comment\n").unwrap();
        assert_eq!(df.instructions[0].rest, "echo hello world # not a comment");
        // Leading whitespace before comments and instructions is ignored.
        let df = parse("        # this is a comment-line\n    RUN echo hello\nRUN echo world\n").unwrap();
        assert_eq!(df.instructions.len(), 2);
    }

    #[test]
    fn unknown_instruction_names_its_line() {
        let e = parse("FROM a\n\nFOO bar\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.msg.contains("unknown instruction: FOO"));
    }

    #[test]
    fn flags_json_and_shell_forms() {
        let df = parse("COPY --from=build --chown=1:2 a b /d/\nCMD [\"echo\", \"hi\"]\nCMD echo hi\nRUN [ \"a\" ]\n")
            .unwrap();
        let c = &df.instructions[0];
        assert_eq!(c.flag("from"), Some("build"));
        assert_eq!(c.flag("chown"), Some("1:2"));
        assert_eq!(c.rest, "a b /d/");
        assert_eq!(json_form(&df.instructions[1].rest), Some(vec!["echo".into(), "hi".into()]));
        assert_eq!(json_form(&df.instructions[2].rest), None);
        assert_eq!(json_form(&df.instructions[3].rest), Some(vec!["a".into()]));
        // Not valid JSON (single quotes): shell form, as the reference warns.
        assert_eq!(json_form("['a']"), None);
    }

    #[test]
    fn heredocs() {
        let df = parse("FROM a\nRUN <<EOF\napt-get update\napt-get install -y vim\nEOF\nCOPY <<-\"END\" /x\n\t$HOME\n\tEND\nRUN ok\n")
            .unwrap();
        assert_eq!(df.instructions[1].heredocs[0].body, "apt-get update\napt-get install -y vim\n");
        assert!(df.instructions[1].heredocs[0].expand);
        assert_eq!(df.instructions[2].heredocs[0].body, "$HOME\n");
        assert!(!df.instructions[2].heredocs[0].expand);
        assert_eq!(df.instructions[3].rest, "ok");
        assert!(parse("RUN <<EOF\nx\n").is_err());
    }

    #[test]
    fn substitution_as_the_reference_shows() {
        let v = vars(&[("FOO", "/bar"), ("abc", "hello"), ("empty", "")]);
        assert_eq!(word("$FOO", &v, '\\').unwrap(), "/bar");
        assert_eq!(word("${FOO}/x", &v, '\\').unwrap(), "/bar/x");
        assert_eq!(word("${missing:-world}", &v, '\\').unwrap(), "world");
        assert_eq!(word("${FOO:-world}", &v, '\\').unwrap(), "/bar");
        assert_eq!(word("${empty:-d}", &v, '\\').unwrap(), "d");
        assert_eq!(word("${empty-d}", &v, '\\').unwrap(), "");
        assert_eq!(word("${FOO:+alt}", &v, '\\').unwrap(), "alt");
        assert_eq!(word("${missing:+alt}", &v, '\\').unwrap(), "");
        assert_eq!(word("${missing:-$abc}", &v, '\\').unwrap(), "hello");
        assert!(word("${missing:?is required}", &v, '\\').unwrap_err().contains("is required"));
        // Escapes: \$foo and \${foo} stay literal.
        assert_eq!(word("\\$FOO", &v, '\\').unwrap(), "$FOO");
        assert_eq!(word("\\${FOO}", &v, '\\').unwrap(), "${FOO}");
        // Single quotes keep $ literal, double quotes expand.
        assert_eq!(words("'$FOO' \"$FOO x\"", &v, '\\').unwrap(), vec!["$FOO", "/bar x"]);
        assert_eq!(word("a$", &v, '\\').unwrap(), "a$");
    }

    #[test]
    fn env_forms_from_the_reference() {
        let v = Vars::new();
        // ENV MY_NAME="John Doe" MY_DOG=Rex\ The\ Dog MY_CAT=fluffy
        let kv = key_values(r#"MY_NAME="John Doe" MY_DOG=Rex\ The\ Dog MY_CAT=fluffy"#, &v, '\\').unwrap();
        assert_eq!(
            kv,
            vec![
                ("MY_NAME".into(), "John Doe".into()),
                ("MY_DOG".into(), "Rex The Dog".into()),
                ("MY_CAT".into(), "fluffy".into())
            ]
        );
        // The old form: one pair, the value is the rest of the line.
        assert_eq!(
            key_values("ONE TWO= THREE=world", &v, '\\').unwrap(),
            vec![("ONE".into(), "TWO= THREE=world".into())]
        );
        // LABEL "com.example.vendor"="ACME Incorporated" and multi-line values.
        let kv = key_values(r#""com.example.vendor"="ACME Incorporated" version="1.0""#, &v, '\\').unwrap();
        assert_eq!(kv[0], ("com.example.vendor".into(), "ACME Incorporated".into()));
        assert_eq!(kv[1], ("version".into(), "1.0".into()));
        assert!(key_values("novalue", &v, '\\').is_err());
        assert_eq!(key_values(r#""a key"="a value""#, &v, '\\').unwrap(), vec![("a key".into(), "a value".into())]);
    }
}
