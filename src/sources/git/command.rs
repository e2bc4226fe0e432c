//! The `git` program, run against one bare mirror. Every call is non-interactive and bounded: no
//! terminal prompt or SSH question can hang a refresh, an HTTP transfer slower than 1 KB/s for a
//! minute aborts, as does an SSH connection silent for a minute (unless the operator set their own
//! `GIT_SSH_COMMAND`), and output is parsed in the C locale. Only long-standing options are
//! used (none newer than git 2.9), so the distributions' older releases work too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: {0}")]
    Git(String),
}

/// The `git` program's version line: whether the git source can run at all.
pub fn version() -> Result<String, GitError> {
    let args = ["--version"];
    let out = spawn(Command::new("git").args(args).stdin(Stdio::null()))?;
    stdout_of(&args, &out).map(|v| v.trim().to_string())
}

/// A bare mirror and the `git` invocations deploywatch makes on it.
pub(super) struct Mirror {
    git_dir: PathBuf,
}

impl Mirror {
    pub(super) fn new(git_dir: &Path) -> Self {
        Self {
            git_dir: git_dir.to_path_buf(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new("git");
        // `--git-dir` rather than `-C`: a relative repository path in the config stays relative to
        // deploywatch's working directory, as the user wrote it.
        let mut dir = std::ffi::OsString::from("--git-dir=");
        dir.push(&self.git_dir);
        c.arg(dir)
            .args([
                "-c",
                "http.lowSpeedLimit=1000",
                "-c",
                "http.lowSpeedTime=60",
            ])
            // gc runs now and then after a fetch; in the foreground, so no process outlives the call.
            .args([
                "-c",
                "gc.autoDetach=false",
                "-c",
                "maintenance.autoDetach=false",
            ])
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "")
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        if std::env::var_os("GIT_SSH_COMMAND").is_none() {
            // No question asked, and a dead server is given up on instead of waited for.
            c.env(
                "GIT_SSH_COMMAND",
                "ssh -o BatchMode=yes -o ConnectTimeout=30 -o ServerAliveInterval=15 -o ServerAliveCountMax=4",
            );
        }
        c
    }

    fn output(&self, args: &[&str]) -> Result<Output, GitError> {
        spawn(self.command().args(args))
    }

    /// Runs `git <args>` and returns its standard output; a non-zero exit is an error carrying
    /// what git said.
    pub(super) fn run(&self, args: &[&str]) -> Result<String, GitError> {
        stdout_of(args, &self.output(args)?)
    }

    /// Fetches every branch and, from a clone, its remote-tracking refs.
    pub(super) fn fetch(&self, url: &str) -> Result<(), GitError> {
        self.run(&[
            "fetch",
            "--quiet",
            "--no-tags",
            // Ends the options: a repository URL can never be read as one.
            "--",
            url,
            "+refs/heads/*:refs/heads/*",
            "+refs/remotes/origin/*:refs/remotes/origin/*",
        ])
        .map(drop)
    }

    /// Every branch and remote-tracking ref with its commit and commit time.
    pub(super) fn refs(&self) -> Result<HashMap<String, RefTip>, GitError> {
        self.run(&[
            "for-each-ref",
            "--format=%(refname) %(objectname) %(committerdate:unix)",
            "refs/heads/",
            "refs/remotes/origin/",
        ])
        .map(|out| parse_refs(&out))
    }

    /// Commits only in `a`, and commits only in `b`.
    pub(super) fn ahead_behind(&self, a: &str, b: &str) -> Result<(usize, usize), GitError> {
        let range = format!("{a}...{b}");
        let out = self.run(&["rev-list", "--left-right", "--count", &range])?;
        let mut n = out.split_whitespace().map(str::parse::<usize>);
        match (n.next(), n.next()) {
            (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
            _ => Err(GitError::Git(format!(
                "rev-list --count printed {out:?}, not two counts"
            ))),
        }
    }

    /// A full or abbreviated SHA to the full id of a commit in the mirror; `None` when it is not
    /// one (unknown, ambiguous, not a commit, not hexadecimal).
    pub(super) fn resolve_commit(&self, sha: &str) -> Result<Option<String>, GitError> {
        if !looks_like_sha(sha) {
            return Ok(None);
        }
        let spec = format!("{sha}^{{commit}}");
        let out = self.output(&[
            "rev-parse",
            "--verify",
            "--quiet",
            // `spec` starts with a hexadecimal digit, so it is never read as an option.
            &spec,
        ])?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|id| !id.is_empty()))
    }

    /// Whether `ancestor` is reachable from `descendant` (both resolved ids).
    pub(super) fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
        let args = ["merge-base", "--is-ancestor", ancestor, descendant];
        let out = self.output(&args)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(failed(&args, &out)),
        }
    }

    /// The commit time of every commit reachable from `tip` but not from `hidden`.
    pub(super) fn commit_times_between(
        &self,
        hidden: &str,
        tip: &str,
    ) -> Result<Vec<Option<DateTime<Utc>>>, GitError> {
        let range = format!("{hidden}..{tip}");
        // `rev-list --format` prints a "commit <id>" line before each commit's own line; git 2.33
        // can leave it out, older releases cannot, so it is skipped here.
        let out = self.run(&["rev-list", "--format=%ct", &range])?;
        Ok(out
            .lines()
            .filter(|l| !l.starts_with("commit "))
            .map(parse_time)
            .collect())
    }

    /// The commit time of `sha`; `None` when it is not a commit of the mirror.
    pub(super) fn commit_time(&self, sha: &str) -> Result<Option<DateTime<Utc>>, GitError> {
        let Some(id) = self.resolve_commit(sha)? else {
            return Ok(None);
        };
        let out = self.run(&["show", "--no-patch", "--format=%ct", &id])?;
        Ok(parse_time(out.trim()))
    }
}

/// One ref of a mirror: the commit it names and that commit's time.
#[derive(Debug, Clone)]
pub(super) struct RefTip {
    pub(super) id: String,
    pub(super) time: Option<DateTime<Utc>>,
}

/// Parses `for-each-ref --format='%(refname) %(objectname) %(committerdate:unix)'`.
fn parse_refs(out: &str) -> HashMap<String, RefTip> {
    out.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let (name, id) = (f.next()?, f.next()?);
            let time = f
                .next()
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(|t| DateTime::from_timestamp(t, 0));
            Some((
                name.to_string(),
                RefTip {
                    id: id.to_string(),
                    time,
                },
            ))
        })
        .collect()
}

/// A full or abbreviated SHA, before it is handed to `git`: anything else is not looked up.
fn looks_like_sha(sha: &str) -> bool {
    (7..=64).contains(&sha.len()) && sha.chars().all(|c| c.is_ascii_hexdigit())
}

/// What a finished `git <args>` printed, or, when it exited non-zero, an error with what it said.
fn stdout_of(args: &[&str], out: &Output) -> Result<String, GitError> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(args, out))
    }
}

fn spawn(c: &mut Command) -> Result<Output, GitError> {
    c.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            GitError::Git(
                "the `git` program is not on PATH; install git (Debian: apt-get install git) \
                 to watch [[git.repos]]"
                    .into(),
            )
        } else {
            GitError::Git(format!("cannot run git: {e}"))
        }
    })
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    s.trim()
        .parse::<i64>()
        .ok()
        .and_then(|t| DateTime::from_timestamp(t, 0))
}

/// What a failed `git` call said, shortened to its last lines (a URL's credentials are never
/// printed by git itself).
fn failed(args: &[&str], out: &Output) -> GitError {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = said[said.len().saturating_sub(3)..].join("; ");
    let what = args.first().copied().unwrap_or("git");
    let status = out
        .status
        .code()
        .map_or_else(|| "a signal".to_string(), |c| format!("status {c}"));
    if tail.is_empty() {
        GitError::Git(format!("git {what} exited with {status}"))
    } else {
        GitError::Git(format!("git {what} exited with {status}: {tail}"))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_refs;

    #[test]
    fn refs_parse_with_and_without_a_commit_time() {
        let refs = parse_refs(
            "refs/heads/main 1111111111111111111111111111111111111111 1700000000\n\
             refs/remotes/origin/main 2222222222222222222222222222222222222222 \n\
             garbage\n",
        );
        assert_eq!(refs.len(), 2);
        let main = &refs["refs/heads/main"];
        assert_eq!(main.id, "1111111111111111111111111111111111111111");
        assert_eq!(main.time.map(|t| t.timestamp()), Some(1_700_000_000));
        assert!(refs["refs/remotes/origin/main"].time.is_none());
    }

    #[test]
    fn only_hexadecimal_shas_reach_git() {
        use super::looks_like_sha;
        for (sha, ok) in [
            ("abc1234", true),
            ("ABCDEF0123", true),
            ("abc123", false),
            ("--upload-pack=x", false),
            ("HEAD", false),
            ("abc1234^{tree}", false),
            ("", false),
        ] {
            assert_eq!(looks_like_sha(sha), ok, "{sha}");
        }
    }
}
