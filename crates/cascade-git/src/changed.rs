//! Change detection: which files a change touched (`git diff --name-only -z`), and which
//! monorepo packages those files belong to.

pub use crate::error::ChangedError;
use globset::{GlobBuilder, GlobMatcher};
use std::path::Path;

/// Files changed between `base` and `head` (`git diff --name-only -z base...head`, the
/// changes on head since it forked from base). `head = None` means the working tree.
pub fn changed_files(
    repo: &Path,
    base: &str,
    head: Option<&str>,
) -> Result<Vec<String>, ChangedError> {
    let range = match head {
        Some(h) => format!("{base}...{h}"),
        None => base.to_owned(),
    };
    // `--end-of-options` keeps a ref that starts with `-` from being read as a flag.
    let out = crate::clone::git(Some(repo))
        .args([
            "diff",
            "--name-only",
            "-z",
            "--no-renames",
            "--end-of-options",
            &range,
            "--",
        ])
        .output()
        .map_err(ChangedError::Spawn)?;
    if !out.status.success() {
        return Err(ChangedError::Git {
            range,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

/// Package names under `pattern` (e.g. `packages/*`) that contain a changed file, sorted
/// and unique. The package name is the path component the last `*` matched.
pub fn changed_packages(files: &[String], pattern: &str) -> Result<Vec<String>, ChangedError> {
    let pattern = pattern.trim_end_matches('/');
    let depth = pattern.split('/').count();
    let matcher: GlobMatcher = GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| ChangedError::Pattern {
            pattern: pattern.to_owned(),
            reason: e.kind().to_string(),
        })?
        .compile_matcher();
    let mut names: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let parts: Vec<&str> = f.split('/').collect();
            // A package is a directory: the file must be inside it, not the entry itself.
            if parts.len() <= depth {
                return None;
            }
            let dir = parts[..depth].join("/");
            matcher.is_match(&dir).then(|| parts[depth - 1].to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_from_files() {
        let files: Vec<String> = [
            "packages/a/src/x.py",
            "packages/b/README.md",
            "packages/a/y.py",
            "docs/z.md",
            "packages/top.txt",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(changed_packages(&files, "packages/*").unwrap(), ["a", "b"]);
        assert_eq!(
            changed_packages(&files, "docs/*").unwrap(),
            Vec::<String>::new()
        );
        assert!(changed_packages(&files, "packages/[").is_err());
    }
}
