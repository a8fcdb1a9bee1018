//! An output file written append-only, with a running SHA-256 and byte
//! count, made durable with flush + fsync.
//!
//! In append mode (`mode: append`) the file keeps what it held: the hash
//! and length start from its existing content, and before the first byte is
//! written the pre-run length is saved durably beside it
//! (`<path>.elspeth-append`, naming the run), so a run that crashes before
//! its first checkpoint is cut back to exactly what the file held before it.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use contracts::plugin::{ArtifactDescriptor, OutputPosition, PluginError};
use contracts::ContentHash;
use sha2::{Digest, Sha256};

pub(crate) struct DurableFile {
    path: PathBuf,
    display_path: String,
    artifact_type: &'static str,
    writer: Option<BufWriter<File>>,
    hasher: Sha256,
    bytes: u64,
    append: bool,
    run_id: Option<String>,
}

/// What a file held when an appending run first opened it.
#[derive(serde::Serialize, serde::Deserialize)]
struct AppendStart {
    run_id: String,
    bytes: u64,
}

impl DurableFile {
    pub(crate) fn new(path: &str, artifact_type: &'static str, append: bool) -> DurableFile {
        DurableFile {
            path: PathBuf::from(path),
            display_path: path.to_owned(),
            artifact_type,
            writer: None,
            hasher: Sha256::new(),
            bytes: 0,
            append,
            run_id: None,
        }
    }

    pub(crate) fn bind_run(&mut self, run_id: &str) {
        self.run_id = Some(run_id.to_owned());
    }

    fn start_path(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".elspeth-append");
        PathBuf::from(name)
    }

    /// Opens the file for appending: the hash covers what it holds, and the
    /// pre-run length is saved before anything is written. Returns that
    /// length (0: a new or empty file).
    pub(crate) fn open_for_append(&mut self) -> Result<u64, PluginError> {
        use std::io::{Read, Seek, SeekFrom};
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(self.io("cannot create the directory of"))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&self.path)
            .map_err(self.io("cannot open"))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 16];
        let mut bytes = 0u64;
        loop {
            let n = file.read(&mut buffer).map_err(self.io("cannot read"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            bytes += n as u64;
        }
        file.seek(SeekFrom::End(0)).map_err(self.io("cannot seek"))?;
        let run_id = self.run_id.clone().ok_or_else(|| PluginError::Contract("append before bind_run".into()))?;
        let start = serde_json::to_vec(&AppendStart { run_id, bytes }).map_err(|e| PluginError::Contract(e.to_string()))?;
        let temporary = self.start_path().with_extension("tmp");
        {
            let mut marker = File::create(&temporary).map_err(self.io("cannot save the pre-run length of"))?;
            marker.write_all(&start).map_err(self.io("cannot save the pre-run length of"))?;
            marker.sync_all().map_err(self.io("cannot save the pre-run length of"))?;
        }
        std::fs::rename(&temporary, self.start_path()).map_err(self.io("cannot save the pre-run length of"))?;
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(directory) = File::open(parent) {
                let _ = directory.sync_all();
            }
        }
        self.hasher = hasher;
        self.bytes = bytes;
        self.writer = Some(BufWriter::with_capacity(1 << 16, file));
        Ok(bytes)
    }

    /// Opens the file if it is not open yet (truncating, or in append mode
    /// keeping its content); its length now.
    pub(crate) fn ensure_open(&mut self) -> Result<u64, PluginError> {
        if self.writer.is_none() {
            if self.append {
                self.open_for_append()?;
            } else {
                self.open()?;
            }
        }
        Ok(self.bytes)
    }

    /// The first line of the file as it is on disk (an appended CSV's header).
    pub(crate) fn first_line(&self) -> Result<String, PluginError> {
        use std::io::BufRead;
        let file = File::open(&self.path).map_err(self.io("cannot read"))?;
        let mut line = String::new();
        std::io::BufReader::new(file).read_line(&mut line).map_err(self.io("cannot read"))?;
        Ok(line)
    }

    /// The run completed: the pre-run length is no longer needed.
    pub(crate) fn finish_append(&mut self) {
        if self.append {
            let _ = std::fs::remove_file(self.start_path());
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.writer.is_some()
    }

    fn io(&self, what: &str) -> impl FnOnce(std::io::Error) -> PluginError + '_ {
        let context = format!("{what} {}", self.display_path);
        move |source| PluginError::Io { context, source }
    }

    /// Creates (truncating) the file; parent directories are created.
    pub(crate) fn open(&mut self) -> Result<(), PluginError> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(self.io("cannot create the directory of"))?;
        }
        let file =
            OpenOptions::new().create(true).write(true).truncate(true).open(&self.path).map_err(self.io("cannot create"))?;
        self.writer = Some(BufWriter::with_capacity(1 << 16, file));
        Ok(())
    }

    /// Checks that the file still begins with what was written: its hash at
    /// each recorded position. Reads the file once; changes nothing.
    pub(crate) fn check_kept(&self, kept: &[OutputPosition]) -> Result<(), PluginError> {
        use std::io::Read;
        let Some(last) = kept.last().filter(|p| p.bytes > 0) else { return Ok(()) };
        let file = File::open(&self.path).map_err(|error| {
            PluginError::Changed(format!(
                "{} cannot be read ({error}), but the run checkpointed {} bytes of it",
                self.display_path, last.bytes
            ))
        })?;
        let length = file.metadata().map_err(self.io("cannot inspect"))?.len();
        if length < last.bytes {
            return Err(PluginError::Changed(format!(
                "{} is {length} bytes long, shorter than the {} bytes the run checkpointed: it was changed since",
                self.display_path, last.bytes
            )));
        }
        let mut hasher = Sha256::new();
        let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
        let mut buffer = vec![0u8; 1 << 16];
        let mut at = 0u64;
        let mut verified = 0u64;
        for position in kept {
            while at < position.bytes {
                let want = usize::try_from((position.bytes - at).min(buffer.len() as u64)).unwrap_or(buffer.len());
                let n = reader.read(&mut buffer[..want]).map_err(self.io("cannot read back"))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
                at += n as u64;
            }
            if hex::encode(hasher.clone().finalize()) != position.content_hash.as_str() {
                return Err(PluginError::Changed(format!(
                    "{} was changed after the run checkpointed it: the bytes from offset {verified} to {} no longer hold \
                     what the run wrote; restore the file or start a new run",
                    self.display_path, position.bytes
                )));
            }
            verified = position.bytes;
        }
        Ok(())
    }

    /// Continues the file cut back to `bytes`: what follows is removed, the
    /// running hash covers the kept bytes, and writes append. A file that was
    /// empty at the checkpoint is removed (it is created again on the first
    /// write).
    pub(crate) fn resume(&mut self, bytes: u64) -> Result<(), PluginError> {
        use std::io::{Read, Seek, SeekFrom};
        self.writer = None;
        self.hasher = Sha256::new();
        self.bytes = 0;
        if bytes == 0 && self.append {
            // No checkpoint yet: back to what the file held before this run
            // (nothing to do if the run never opened it).
            let start = std::fs::read(self.start_path()).ok().and_then(|b| serde_json::from_slice::<AppendStart>(&b).ok());
            return match start {
                Some(start) if self.run_id.as_deref() == Some(start.run_id.as_str()) => {
                    self.append = false;
                    let result = self.resume(start.bytes);
                    self.append = true;
                    result
                }
                Some(_) | None => Ok(()),
            };
        }
        if bytes == 0 {
            return match std::fs::remove_file(&self.path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(self.io("cannot remove")(error)),
                Ok(()) | Err(_) => Ok(()),
            };
        }
        let mut file = OpenOptions::new().read(true).write(true).open(&self.path).map_err(self.io("cannot reopen"))?;
        let length = file.metadata().map_err(self.io("cannot inspect"))?.len();
        if length < bytes {
            return Err(PluginError::Contract(format!(
                "{} is {length} bytes long, shorter than the {bytes} bytes the checkpoint recorded",
                self.display_path
            )));
        }
        file.set_len(bytes).map_err(self.io("cannot cut back"))?;
        let mut buffer = vec![0u8; 1 << 16];
        let mut reader = (&file).take(bytes);
        loop {
            let n = reader.read(&mut buffer).map_err(self.io("cannot read back"))?;
            if n == 0 {
                break;
            }
            self.hasher.update(&buffer[..n]);
        }
        file.seek(SeekFrom::End(0)).map_err(self.io("cannot seek"))?;
        file.sync_data().map_err(self.io("cannot sync"))?;
        self.bytes = bytes;
        self.writer = Some(BufWriter::with_capacity(1 << 16, file));
        Ok(())
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), PluginError> {
        self.ensure_open()?;
        let context = format!("cannot write {}", self.display_path);
        let writer = self.writer.as_mut().ok_or_else(|| PluginError::Contract("file not open".into()))?;
        writer.write_all(bytes).map_err(|source| PluginError::Io { context, source })?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs; describes the file as it now is on disk.
    pub(crate) fn sync(&mut self) -> Result<Option<ArtifactDescriptor>, PluginError> {
        let context = format!("cannot flush {}", self.display_path);
        let Some(writer) = self.writer.as_mut() else { return Ok(None) };
        writer.flush().map_err(|source| PluginError::Io { context: context.clone(), source })?;
        writer.get_ref().sync_data().map_err(|source| PluginError::Io { context, source })?;
        Ok(Some(ArtifactDescriptor {
            artifact_type: self.artifact_type.to_owned(),
            path_or_uri: self.display_path.clone(),
            content_hash: ContentHash::parse(hex::encode(self.hasher.clone().finalize()))
                .map_err(|e| PluginError::Contract(e.to_string()))?,
            size_bytes: self.bytes,
        }))
    }
}
