//! [`Tmpfs`]: a small filesystem of its own for tests that fill a disk. Shared with the
//! server's tests (`#[path]`), so it depends on `tempfile` alone.

use std::io::Write as _;
use std::path::Path;

use tempfile::TempDir;

/// A tmpfs mounted on a temporary directory (as root, as in CI), unmounted on drop.
pub(crate) struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it, e.g. `2m`); `None`, after saying
    /// why on stderr, where mounting is refused (not root, no `mount`, a container without the
    /// capability).
    pub(crate) fn mount(size: &str, test: &str) -> Option<Tmpfs> {
        let dir = TempDir::new().unwrap();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match output {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            refused => {
                let why = match refused {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                // Straight to stderr: the test harness does not capture this, so a skip shows.
                let _ =
                    writeln!(std::io::stderr(), "SKIPPED {test}: cannot mount a tmpfs ({why}); run as root to test");
                None
            }
        }
    }

    /// Where it is mounted.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file still open (a store closing in the background) must not keep it mounted.
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}
