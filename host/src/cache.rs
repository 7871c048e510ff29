//! Compiled plugins kept on disk, so that a plugin is compiled once: a
//! 17 MiB Python or JavaScript plugin takes seconds to compile and a few
//! milliseconds to load compiled.
//!
//! An entry is keyed by the SHA-256 of the wasp version, the engine's
//! compatibility hash (wasmtime version, target and code-generation
//! settings) and the plugin's bytes: a changed plugin, wasp or engine
//! configuration compiles again. Loading compiled code runs it natively,
//! so the cache is trusted like the wasp binary itself: its directory is
//! made private to the user running wasp (mode 0700) and refused when
//! another user owns it or may write to it; each entry carries the SHA-256
//! of its content, checked before the code is loaded, so a truncated or
//! damaged entry compiles again instead of being run.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Entries kept; the least recently used beyond this are removed.
pub const MAX_ENTRIES: usize = 64;

/// Length of the content digest that ends an entry.
const DIGEST_LEN: usize = 32;

/// Why a cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The directory could not be created or read.
    #[error("cache directory {0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// Someone other than the user running wasp owns the directory or may
    /// write to it: code loaded from it would run as this user.
    #[error(
        "cache directory {0} is not private to this user (owned by another user, or writable by group or others): not used"
    )]
    NotPrivate(PathBuf),
}

/// A directory of compiled plugins ([`crate::run::PluginHost::load_cached`]).
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// Opens (creating it, mode 0700) the cache directory `dir`, refusing
    /// one that another user owns or may write to.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| CacheError::Io(dir.clone(), e))?;
        let meta = fs::metadata(&dir).map_err(|e| CacheError::Io(dir.clone(), e))?;
        let writable_by_others = meta.permissions().mode() & 0o022 != 0;
        if meta.uid() != rustix::process::geteuid().as_raw() || writable_by_others {
            return Err(CacheError::NotPrivate(dir));
        }
        Ok(Self { dir })
    }

    /// The default directory: `$WASP_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/wasp`, else `$HOME/.cache/wasp`; `None` when none
    /// of these is set.
    pub fn default_dir() -> Option<PathBuf> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        var("WASP_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("wasp")))
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache").join("wasp")))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `plugin`'s compiled form for `engine` is kept.
    fn entry(&self, engine: &Engine, plugin: &[u8]) -> PathBuf {
        let mut key = DigestHasher(Sha256::new());
        env!("CARGO_PKG_VERSION").hash(&mut key);
        engine.precompile_compatibility_hash().hash(&mut key);
        key.0.update(plugin);
        let digest = key.0.finalize();
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.cwasm"))
    }

    /// `plugin` compiled for `engine`: loaded from the cache, or compiled
    /// and stored. A cache that cannot be read or written is only a slower
    /// start (logged), never an error of its own.
    pub(crate) fn component(&self, engine: &Engine, plugin: &[u8]) -> wasmtime::Result<Component> {
        let entry = self.entry(engine, plugin);
        if let Some(component) = self.load(engine, &entry) {
            tracing::debug!("compiled plugin loaded from {}", entry.display());
            return Ok(component);
        }
        let component = Component::new(engine, plugin)?;
        let stored = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|compiled| self.store(&entry, &compiled));
        match stored {
            Ok(()) => tracing::debug!("compiled plugin stored in {}", entry.display()),
            Err(e) => tracing::warn!("compile cache: cannot store {}: {e}", entry.display()),
        }
        Ok(component)
    }

    /// The entry at `path`, when it exists, is whole and fits the engine.
    fn load(&self, engine: &Engine, path: &Path) -> Option<Component> {
        let mut bytes = fs::read(path).ok()?;
        let Some(split) = bytes.len().checked_sub(DIGEST_LEN) else {
            tracing::warn!(
                "compile cache: {} is damaged; compiling again",
                path.display()
            );
            return None;
        };
        if Sha256::digest(&bytes[..split]).as_slice() != &bytes[split..] {
            tracing::warn!(
                "compile cache: {} is damaged; compiling again",
                path.display()
            );
            return None;
        }
        bytes.truncate(split);
        // SAFETY: the entry was written by `store` below from a component
        // this engine compiled, in a directory only this user can write
        // (checked by `open`), and its content digest matches; wasmtime
        // checks that it was compiled by a compatible engine.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, &bytes) };
        match loaded {
            Ok(component) => {
                // Recently used entries are kept longest.
                let _ = fs::File::open(path).and_then(|f| f.set_modified(SystemTime::now()));
                Some(component)
            }
            Err(e) => {
                tracing::debug!(
                    "compile cache: {} not loaded ({e}); compiling again",
                    path.display()
                );
                None
            }
        }
    }

    /// Writes an entry whole (a temporary file renamed into place), then
    /// trims the cache to [`MAX_ENTRIES`].
    fn store(&self, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        let written = (|| {
            let mut file = fs::File::create(&temporary)?;
            file.write_all(compiled)?;
            file.write_all(&Sha256::digest(compiled))?;
            file.sync_all()?;
            fs::rename(&temporary, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written?;
        self.trim();
        Ok(())
    }

    /// Removes the least recently used entries beyond [`MAX_ENTRIES`].
    fn trim(&self) {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, PathBuf)> = listing
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() <= MAX_ENTRIES {
            return;
        }
        entries.sort();
        for (_, stale) in &entries[..entries.len() - MAX_ENTRIES] {
            let _ = fs::remove_file(stale);
        }
    }
}

/// Feeds a value's `Hash` into a SHA-256 digest.
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(
            digest[..8]
                .try_into()
                .expect("a SHA-256 digest has 32 bytes"),
        )
    }
}
