//! Changing the branches of a live mount, as AUFS's `remount,add/del/mod` does.
//!
//! A change is sent as text in the root's `trusted.strata.ctl` xattr:
//! `add N PATH=PERM`, `append PATH=PERM`, `prepend PATH=PERM`, `del PATH`, `mod PATH=PERM`.
//! The daemon checks it, swaps the branch stack while it holds the namespace lock alone,
//! marks every node for re-resolution, and has the kernel drop what it cached.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::branch::{Branch, BranchSpec, Perm};

/// One change to the branch stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BranchChange {
    /// Insert at position `at` (0 = top).
    Add {
        at: Option<usize>,
        spec: BranchSpec,
    },
    Del(PathBuf),
    Mod(BranchSpec),
}

impl BranchChange {
    /// Parses the control text (paths already absolute).
    pub fn parse(text: &str) -> Result<BranchChange, String> {
        let spec = |s: &str| -> Result<BranchSpec, String> {
            let (path, perm) = s.rsplit_once('=').ok_or_else(|| format!("'{s}': expected PATH=PERM"))?;
            Ok(BranchSpec { path: PathBuf::from(path), perm: perm.parse::<Perm>().map_err(|e| e.to_string())? })
        };
        let (verb, rest) = text.split_once(' ').ok_or_else(|| format!("bad branch change '{text}'"))?;
        match verb {
            "add" => {
                let (at, s) = rest.split_once(' ').ok_or_else(|| format!("bad branch change '{text}'"))?;
                let at = at.parse().map_err(|_| format!("bad branch position '{at}'"))?;
                Ok(BranchChange::Add { at: Some(at), spec: spec(s)? })
            }
            "append" => Ok(BranchChange::Add { at: None, spec: spec(rest)? }),
            "prepend" => Ok(BranchChange::Add { at: Some(0), spec: spec(rest)? }),
            "del" => Ok(BranchChange::Del(PathBuf::from(rest))),
            "mod" => Ok(BranchChange::Mod(spec(rest)?)),
            _ => Err(format!("unknown branch change '{verb}' (add, append, prepend, del, mod)")),
        }
    }

    /// The branch path the change is about.
    pub fn path(&self) -> &Path {
        match self {
            BranchChange::Add { spec, .. } | BranchChange::Mod(spec) => &spec.path,
            BranchChange::Del(p) => p,
        }
    }

    /// The control text for this change.
    pub fn to_text(&self) -> String {
        match self {
            BranchChange::Add { at: Some(n), spec } => format!("add {n} {spec}"),
            BranchChange::Add { at: None, spec } => format!("append {spec}"),
            BranchChange::Del(p) => format!("del {}", p.display()),
            BranchChange::Mod(spec) => format!("mod {spec}"),
        }
    }
}

/// The stack after a change, and where each old branch went (`None`: removed).
pub struct Restacked {
    pub branches: Vec<Branch>,
    pub wb: Option<u16>,
    pub moved: Vec<Option<u16>>,
    /// The branch whose content appears, disappears or changes meaning.
    pub changed: PathBuf,
}

/// Builds the new stack. `work_branch` is the branch holding the work dir: the only one
/// that may be (or become again) writable while mounted.
pub fn restack(
    old: &[Branch],
    change: &BranchChange,
    mountpoint: &Path,
    work_branch: Option<&Path>,
) -> Result<Restacked, String> {
    let find = |p: &Path| {
        let canon = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        old.iter()
            .position(|b| b.path == canon || b.path == p)
            .ok_or_else(|| format!("{}: not a branch of this mount", p.display()))
    };
    let mut branches: Vec<Branch> =
        old.iter().map(|b| Branch { path: b.path.clone(), perm: b.perm, root: b.root.clone() }).collect();
    let mut moved: Vec<Option<u16>> = (0..old.len() as u16).map(Some).collect();
    let changed;
    match change {
        BranchChange::Add { at, spec } => {
            let path = spec.path.canonicalize().map_err(|e| format!("{}: {e}", spec.path.display()))?;
            let md = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if !md.is_dir() {
                return Err(format!("{}: not a directory", path.display()));
            }
            if old.iter().any(|b| std::fs::metadata(&b.path).is_ok_and(|m| (m.dev(), m.ino()) == (md.dev(), md.ino())))
            {
                return Err(format!("{}: already a branch of this mount", path.display()));
            }
            if mountpoint.starts_with(&path) {
                return Err(format!("{}: the mountpoint is inside it", path.display()));
            }
            if spec.perm.is_writable() {
                return Err(format!("{}: a writable branch cannot be added to a live mount", path.display()));
            }
            let at = at.unwrap_or(old.len());
            if at > old.len() {
                return Err(format!("position {at} is past the last branch ({})", old.len()));
            }
            let root = crate::branch::open_root(&path, spec.perm).map_err(|e| format!("{}: {e}", path.display()))?;
            branches.insert(at, Branch { path: path.clone(), perm: spec.perm, root: Arc::new(root) });
            for m in moved.iter_mut().flatten() {
                if *m as usize >= at {
                    *m += 1;
                }
            }
            changed = path;
        }
        BranchChange::Del(p) => {
            let i = find(p)?;
            if old[i].perm.is_writable() {
                return Err(format!(
                    "{}: the writable branch cannot be deleted from a live mount",
                    old[i].path.display()
                ));
            }
            if old.len() == 1 {
                return Err(format!("{}: the last branch cannot be deleted", old[i].path.display()));
            }
            changed = branches.remove(i).path;
            moved[i] = None;
            for m in moved.iter_mut().flatten() {
                if *m as usize > i {
                    *m -= 1;
                }
            }
        }
        BranchChange::Mod(spec) => {
            let i = find(&spec.path)?;
            if spec.perm.is_writable() && !old[i].perm.is_writable() && work_branch != Some(old[i].path.as_path()) {
                return Err(format!(
                    "{}: only the branch that was writable at mount time can be made writable again",
                    old[i].path.display()
                ));
            }
            branches[i].perm = spec.perm;
            changed = old[i].path.clone();
        }
    }
    let wb = branches.iter().position(|b| b.perm.is_writable()).map(|w| w as u16);
    Ok(Restacked { branches, wb, moved, changed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_changes() {
        for text in ["add 2 /a=ro", "append /b=ro+wh", "del /c", "mod /d=ro"] {
            assert_eq!(BranchChange::parse(text).unwrap().to_text(), text);
        }
        assert_eq!(
            BranchChange::parse("prepend /x=ro").unwrap(),
            BranchChange::Add { at: Some(0), spec: BranchSpec { path: "/x".into(), perm: Perm::Ro } }
        );
        assert!(BranchChange::parse("frob /x").is_err());
        assert!(BranchChange::parse("mod /x=rx").is_err());
    }
}
