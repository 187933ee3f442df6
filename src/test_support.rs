//! Helpers shared by the unit tests of several modules.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let unique = format!("edgemq-{name}-{}-{:?}", std::process::id(), Instant::now());
        let path = std::env::temp_dir().join(unique.replace([' ', ':', '.'], "_"));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
