//! Where the read commands (`explain`, `runs`, `purge`, `export`) find an
//! existing Landscape and its payload store, and how they name a run.

use std::path::{Path, PathBuf};

use anyhow::Context;
use contracts::RunId;
use landscape::{PayloadStore, Recorder};

/// The Landscape to read: named directly, or taken from a settings file.
#[derive(Debug, clap::Args)]
pub(crate) struct LandscapeArgs {
    /// The Landscape URL (sqlite:///relative.db, sqlite:////absolute.db or
    /// postgresql://...). It must already exist: nothing is created.
    #[arg(long, short = 'd', required_unless_present = "settings")]
    database: Option<String>,
    /// Read the Landscape URL and the payload store location from this
    /// pipeline settings file instead.
    #[arg(long, short, conflicts_with = "database")]
    settings: Option<PathBuf>,
    /// The payload store directory (default: the settings' payload store;
    /// with --database, the one beside the Landscape file, else
    /// .elspeth/payloads when it exists).
    #[arg(long)]
    payload_dir: Option<PathBuf>,
}

/// `~/x` → `$HOME/x`; other paths unchanged.
pub(crate) fn expand_tilde(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

impl LandscapeArgs {
    /// Opens the existing Landscape (and payload store, when there is one).
    pub(crate) fn open(&self) -> anyhow::Result<Recorder> {
        let (url, payload_dir) = self.locate()?;
        Recorder::open_existing(&url, payload_dir.map(PayloadStore::new)).context("cannot open the Landscape")
    }

    /// The Landscape URL and the payload store directory (when there is one).
    pub(crate) fn locate(&self) -> anyhow::Result<(String, Option<PathBuf>)> {
        let (url, configured_payloads) = match (&self.database, &self.settings) {
            (Some(url), _) => (url.clone(), None),
            (None, Some(settings)) => {
                let settings = expand_tilde(settings);
                let loaded = engine::settings::load(&settings)
                    .map_err(|e| anyhow::format_err!("{}: invalid settings\n{e}", settings.display()))?;
                (loaded.settings.landscape.url.clone(), Some(loaded.settings.payload_dir()))
            }
            (None, None) => anyhow::bail!("name the Landscape with --database URL or --settings FILE"),
        };
        let url = match url.strip_prefix("sqlite:///~/") {
            Some(rest) => format!("sqlite:///{}", expand_tilde(&Path::new("~").join(rest)).display()),
            None => url,
        };
        let payload_dir = match (&self.payload_dir, configured_payloads) {
            (Some(dir), _) => {
                let dir = expand_tilde(dir);
                anyhow::ensure!(dir.is_dir(), "payload store {} does not exist", dir.display());
                Some(dir)
            }
            (None, Some(dir)) => Some(dir).filter(|d| d.is_dir()),
            (None, None) => landscape::connection::default_payload_dir(&url)
                .filter(|d| d.is_dir())
                .or_else(|| Some(PathBuf::from(".elspeth/payloads")).filter(|d| d.is_dir())),
        };
        Ok((url, payload_dir))
    }
}

/// A run id, or `latest` for the most recently started run.
pub(crate) fn resolve_run(recorder: &mut Recorder, run: &str) -> anyhow::Result<RunId> {
    if run == "latest" {
        return recorder
            .list_runs()?
            .into_iter()
            .next()
            .map(|r| r.run_id)
            .ok_or_else(|| anyhow::format_err!("the Landscape holds no runs"));
    }
    let run_id = RunId::parse(run).map_err(|e| anyhow::format_err!("--run {run:?}: {e} (give a run id or `latest`)"))?;
    recorder.get_run(&run_id).map_err(|_| anyhow::format_err!("run {run_id} is not in this Landscape"))?;
    Ok(run_id)
}
