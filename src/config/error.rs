// Load errors that name file, line, column and key (SPEC B1), the byte-offset to
// line/column map they are computed with, and where the file's relative paths lead.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A configuration file could not be loaded: where, which key, and why.
///
/// Displays as `file:line:column: key `name`: message`, the form editors jump to. `Debug`
/// prints the same line, so `fn main() -> Result<(), Box<dyn Error>>` reports a bad file
/// readably.
///
/// ```
/// use tower_secure::config::Deployment;
///
/// let err = Deployment::from_toml_str("deployment.toml", "[[resource.access_control]]\ncontext = \"api\"\n")
///     .and_then(|d| tower_secure::policy::Policy::compile(&d).map(|_| ()))
///     .unwrap_err();
/// assert_eq!((err.line, err.key.as_deref()), (2, Some("context")));
/// assert!(err.to_string().starts_with("deployment.toml:2:11: key `context`"));
/// assert_eq!(format!("{err:?}"), err.to_string());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name (or the name given to an in-memory source).
    pub file: Arc<str>,
    /// 1-based line; 0 when the error concerns no single place (an unreadable file).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The key the error is about, when there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The `Display` line: what `main` prints when it returns the error.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}

/// Maps byte offsets of one source text to lines and columns, and resolves the relative
/// paths the text names.
#[derive(Debug, Clone)]
pub struct SourceMap {
    file: Arc<str>,
    text: Arc<str>,
    line_starts: Vec<usize>,
    /// The directory of the file the text was read from; `None` for in-memory text.
    directory: Option<Arc<Path>>,
}

impl SourceMap {
    pub(crate) fn new(file: &str, text: &str) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(at, _)| at + 1)).collect();
        Self { file: Arc::from(file), text: Arc::from(text), line_starts, directory: None }
    }

    /// The same text, read from the file at `path`: relative paths it names resolve against
    /// that file's directory (made absolute now, so a later change of the working directory
    /// does not move them).
    pub(crate) fn read_from(mut self, path: &Path) -> Self {
        let directory = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
        // `absolute` fails only for an empty path or without a working directory; the
        // directory as given still resolves against the working directory then.
        let directory = std::path::absolute(&directory).unwrap_or(directory);
        self.directory = Some(Arc::from(directory));
        self
    }

    /// The file name.
    pub fn file(&self) -> &Arc<str> {
        &self.file
    }

    /// Where a path named in this text leads: an absolute path as it is; a relative one
    /// against the directory of the file the text was read from, or against the working
    /// directory for text given in memory.
    ///
    /// ```
    /// use std::path::Path;
    /// use tower_secure::config::Deployment;
    ///
    /// let in_memory = Deployment::from_toml_str("deployment.toml", "")?;
    /// assert_eq!(in_memory.source().resolve("keys/signing.pem"), Path::new("keys/signing.pem"));
    /// assert_eq!(in_memory.source().resolve("/etc/keys/signing.pem"), Path::new("/etc/keys/signing.pem"));
    /// # Ok::<(), tower_secure::config::ConfigError>(())
    /// ```
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        match &self.directory {
            Some(directory) if path.as_ref().is_relative() => directory.join(path),
            _ => path.as_ref().to_path_buf(),
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let column = self.text.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    /// An error at `span`, about `key`.
    pub fn error(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.position(span.start);
        ConfigError { file: self.file.clone(), line, column, key: Some(key.to_owned()), message: message.into() }
    }

    /// Turns a TOML syntax or shape error into a [`ConfigError`] that names the key.
    pub(crate) fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let message = err.message().trim().to_owned();
        let span = err.span().unwrap_or(0..0);
        let (line, column) = self.position(span.start);
        let key = key_in_message(&message).or_else(|| self.key_before(span.start));
        ConfigError { file: self.file.clone(), line, column, key, message }
    }

    /// The bare key assigned on the line holding `offset` (`key = value`), or the last key
    /// of a table header there (`[oauth2.issuer]`), if any.
    fn key_before(&self, offset: usize) -> Option<String> {
        let (line, _) = self.position(offset);
        let start = self.line_starts[line - 1];
        let end = self.line_starts.get(line).copied().unwrap_or(self.text.len());
        let text = self.text.get(start..end)?;
        let header = text.trim().strip_prefix('[').and_then(|t| t.trim_start_matches('[').split_once(']'));
        let key = match header {
            Some((header, _)) => header.trim(),
            None => text.split_once('=')?.0.trim(),
        };
        let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        bare.then(|| key.rsplit('.').next().unwrap_or(key).to_owned())
    }
}

/// `unknown field `foo`` and `missing field `bar`` name their key in the message.
fn key_in_message(message: &str) -> Option<String> {
    ["unknown field `", "missing field `", "duplicate field `", "duplicate key `"]
        .iter()
        .find_map(|prefix| message.split_once(prefix))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC B1: a relative path resolves against the directory of the file that names it;
    // text given in memory keeps the working directory.
    #[test]
    fn relative_paths_follow_the_file() {
        let read = SourceMap::new("conf/deployment.toml", "").read_from(Path::new("/srv/app/conf/deployment.toml"));
        assert_eq!(read.resolve("keys/a.pem"), Path::new("/srv/app/conf/keys/a.pem"));
        assert_eq!(read.resolve("/etc/a.pem"), Path::new("/etc/a.pem"));
        assert_eq!(SourceMap::new("x", "").resolve("keys/a.pem"), Path::new("keys/a.pem"));
    }

    #[test]
    fn positions_are_one_based() {
        let map = SourceMap::new("f", "ab\ncd\n");
        assert_eq!(map.position(0), (1, 1));
        assert_eq!(map.position(4), (2, 2));
        assert_eq!(map.position(6), (3, 1));
    }
}
