// SPDX-License-Identifier: MPL-2.0
//! JSON lines into a file (or standard output), a whole line per write, the file
//! rotated by size when asked.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{PublishError, Publisher};

/// Appends messages as lines to `location` (`-`: standard output).
pub struct FilePublisher {
    out: Output,
    /// Rotate when a line would take the file past this many bytes (0: never).
    max_size: u64,
}

enum Output {
    Stdout,
    File {
        path: PathBuf,
        file: File,
        size: u64,
    },
}

impl FilePublisher {
    /// Opens `location` for appending (creating it), or standard output for `-`.
    pub fn open(location: &str, max_size: u64) -> Result<Self, PublishError> {
        if location.is_empty() {
            return Err(PublishError::Start(
                "no location set for method=file".into(),
            ));
        }
        let out = if location == "-" {
            Output::Stdout
        } else {
            let path = PathBuf::from(location);
            let (file, size) = open_append(&path)?;
            Output::File { path, file, size }
        };
        Ok(Self { out, max_size })
    }
}

fn open_append(path: &Path) -> Result<(File, u64), PublishError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            PublishError::Start(format!("cannot open {} for writing: {e}", path.display()))
        })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}

impl Publisher for FilePublisher {
    fn publish(&mut self, message: &str) -> Result<(), PublishError> {
        let mut line = String::with_capacity(message.len() + 1);
        line.push_str(message);
        line.push('\n');
        match &mut self.out {
            Output::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(line.as_bytes())?;
                stdout.flush()?;
            }
            Output::File { path, file, size } => {
                let len = line.len() as u64;
                if self.max_size > 0 && *size > 0 && *size + len > self.max_size {
                    // `FILE` becomes `FILE.1` (replacing an older one); a new `FILE` starts.
                    let mut rotated = path.as_os_str().to_owned();
                    rotated.push(".1");
                    std::fs::rename(&*path, PathBuf::from(rotated))?;
                    (*file, *size) = open_append(path)?;
                }
                // One write of the whole line: appends never interleave half lines.
                file.write_all(line.as_bytes())?;
                *size += len;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), PublishError> {
        if let Output::File { file, .. } = &mut self.out {
            file.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("radio-file-pub-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn lines_are_appended_and_rotated_by_size() {
        let dir = scratch("rotate");
        let path = dir.join("out.jsonl");
        std::fs::write(&path, "{\"old\":1}\n").unwrap();
        let mut publisher = FilePublisher::open(path.to_str().unwrap(), 30).unwrap();
        publisher.publish("{\"a\":1}").unwrap();
        publisher.publish("{\"b\":2}").unwrap();
        // Past 30 bytes: the file so far moves to out.jsonl.1.
        publisher.publish("{\"c\":3}").unwrap();
        publisher.flush().unwrap();
        let rotated = std::fs::read_to_string(dir.join("out.jsonl.1")).unwrap();
        let current = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(rotated, "{\"old\":1}\n{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(current, "{\"c\":3}\n");
    }

    #[test]
    fn an_unwritable_location_is_a_clear_error() {
        let err = FilePublisher::open("/proc/no/such/file.jsonl", 0)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot start publishing: cannot open /proc/no/such/file.jsonl"),
            "{err}"
        );
        let err = FilePublisher::open("", 0).err().unwrap();
        assert!(err.to_string().contains("no location"), "{err}");
    }
}
