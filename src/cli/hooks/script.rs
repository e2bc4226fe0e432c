//! The text of the hook scripts `deploywatch hooks install` writes. Plain `sh`, so they run
//! wherever git runs hooks; they call the deploywatch binary by the path it had at install time
//! (falling back to `deploywatch` on PATH) and carry no credentials: the binary reads those
//! from the environment when it runs. Pure.

use super::plan::{MARKER, ORIG_SUFFIX};

/// What the hooks pass on to the binary (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOptions {
    /// The binary's absolute path at install time.
    pub exe: String,
    pub branches: Vec<String>,
    pub app: Option<String>,
    pub watch_timeout: u64,
    pub verify: bool,
}

/// Quotes `s` for `sh` as one word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn common_args(o: &HookOptions) -> String {
    let mut a = String::new();
    for b in &o.branches {
        a.push_str(&format!(" --branch {}", sh_quote(b)));
    }
    if let Some(app) = &o.app {
        a.push_str(&format!(" --app {}", sh_quote(app)));
    }
    a
}

fn head(hook: &str, o: &HookOptions, why: &str) -> String {
    format!(
        "#!/bin/sh\n\
         {MARKER}: {hook} (written by `deploywatch hooks install`; `deploywatch hooks uninstall` puts back what was here)\n\
         # {why}\n\
         DW={exe}\n\
         [ -x \"$DW\" ] || DW=deploywatch\n\
         orig=\"$(dirname \"$0\")/{hook}{ORIG_SUFFIX}\"\n\
         # Git hands the hook its input once; keep it for the original hook and for deploywatch.\n\
         input=$(mktemp \"${{TMPDIR:-/tmp}}/deploywatch-{hook}.XXXXXX\" 2>/dev/null) || input=\n\
         if [ -z \"$input\" ]; then\n\
         \x20 # No temporary file: the original hook alone gets the input, as before install.\n\
         \x20 if [ -x \"$orig\" ]; then exec \"$orig\" \"$@\"; fi\n\
         \x20 exit 0\n\
         fi\n\
         trap 'rm -f \"$input\"' EXIT\n\
         cat > \"$input\"\n\
         bounded() {{ if command -v timeout >/dev/null 2>&1; then timeout 5 \"$@\"; else \"$@\"; fi; }}\n",
        exe = sh_quote(&o.exe),
    )
}

/// `pre-push`: the original hook (if any) runs first and keeps its say: when it refuses, the push
/// is refused as before. deploywatch's part only warns and records the push, within 5 s, and never
/// changes the exit code.
pub fn pre_push(o: &HookOptions) -> String {
    format!(
        "{}\
         if [ -x \"$orig\" ]; then\n\
         \x20 \"$orig\" \"$@\" < \"$input\"\n\
         \x20 rc=$?\n\
         \x20 [ \"$rc\" -eq 0 ] || exit \"$rc\"\n\
         fi\n\
         bounded \"$DW\" hooks run pre-push{} -- \"$@\" < \"$input\" || true\n\
         exit 0\n",
        head(
            "pre-push",
            o,
            "Never blocks a push on deploywatch's account: warns when behind or when the last deployment failed."
        ),
        common_args(o)
    )
}

/// `reference-transaction`: after a push moved a remote-tracking ref (`committed`), starts a
/// detached `watch --commit` and returns at once. The original hook's exit code stands (in the
/// `prepared` state it may abort the transaction, as before install).
pub fn reference_transaction(o: &HookOptions) -> String {
    format!(
        "{}\
         rc=0\n\
         if [ -x \"$orig\" ]; then\n\
         \x20 \"$orig\" \"$@\" < \"$input\"\n\
         \x20 rc=$?\n\
         fi\n\
         if [ \"$1\" = committed ] && grep -q ' refs/remotes/' \"$input\" 2>/dev/null; then\n\
         \x20 bounded \"$DW\" hooks run reference-transaction{} --timeout {}{} -- \"$1\" < \"$input\" >/dev/null 2>&1 || true\n\
         fi\n\
         exit \"$rc\"\n",
        head(
            "reference-transaction",
            o,
            "After a push, starts `deploywatch watch --commit` in the background; status in .git/deploywatch/."
        ),
        common_args(o),
        o.watch_timeout,
        if o.verify { " --verify" } else { "" }
    )
}

pub fn render(hook: &str, o: &HookOptions) -> Option<String> {
    match hook {
        "pre-push" => Some(pre_push(o)),
        "reference-transaction" => Some(reference_transaction(o)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> HookOptions {
        HookOptions {
            exe: "/opt/it's here/deploywatch".into(),
            branches: vec!["main".into()],
            app: Some("api; rm -rf /".into()),
            watch_timeout: 600,
            verify: true,
        }
    }

    #[test]
    fn quoting_keeps_one_word() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(x)"), "'$(x)'");
    }

    #[test]
    fn scripts_are_marked_quoted_and_free_of_secrets() {
        for hook in super::super::plan::HOOKS {
            let s = render(hook, &opts()).unwrap();
            assert!(s.starts_with("#!/bin/sh\n"), "{s}");
            assert_eq!(
                super::super::plan::classify_hook(Some(s.as_bytes())),
                super::super::plan::Existing::Ours
            );
            assert!(s.contains(r"DW='/opt/it'\''s here/deploywatch'"), "{s}");
            assert!(s.contains(r"--app 'api; rm -rf /'"), "{s}");
            assert!(!s.contains("TOKEN"), "no credentials in hooks: {s}");
            assert!(s.contains(&format!("{hook}.deploywatch-orig")), "{s}");
        }
        let p = pre_push(&opts());
        assert!(p.ends_with("exit 0\n"), "{p}");
        assert!(p.contains("--branch 'main'"), "{p}");
        let r = reference_transaction(&opts());
        assert!(r.contains("--timeout 600 --verify"), "{r}");
        assert!(render("post-commit", &opts()).is_none());
    }
}
