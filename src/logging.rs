//! runc-compatible logging: `--log FILE` (appended) and `--log-format text|json`.
//! An error is written once to the log (when given) and once to stderr.
//!
//! With a JSON log file, warnings are held back until the command ends (or
//! reaches a long wait: [`flush_warnings`]): podman decodes a failed call's
//! log file as one JSON object, so a failure writes a single line, the error
//! with the warnings folded into it.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Default)]
struct Config {
    file: Option<PathBuf>,
    format: Format,
    debug: bool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Warnings held back (JSON log file only), in order.
static PENDING: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn holds_warnings() -> bool {
    CONFIG
        .get()
        .is_some_and(|c| c.file.is_some() && c.format == Format::Json)
}

fn take_pending() -> Vec<String> {
    PENDING
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default()
}

/// Write the warnings held back so far: the command succeeded, or goes on
/// for long (a foreground container, an events stream).
pub fn flush_warnings() {
    for w in take_pending() {
        write("warning", &w);
    }
}

pub fn init(file: Option<PathBuf>, format: Format, debug: bool) {
    let _ = CONFIG.set(Config {
        file,
        format,
        debug,
    });
}

/// One log line in the chosen format.
pub fn line(level: &str, msg: &str, format: Format) -> String {
    let time = crate::state::rfc3339(SystemTime::now());
    match format {
        Format::Json => serde_json::json!({"level": level, "msg": msg, "time": time}).to_string(),
        Format::Text => format!(
            "time=\"{time}\" level={level} msg={}",
            serde_json::Value::from(msg)
        ),
    }
}

fn write(level: &str, msg: &str) {
    let Some(c) = CONFIG.get() else { return };
    let Some(f) = &c.file else { return };
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(f) {
        let _ = writeln!(f, "{}", line(level, msg, c.format));
    }
}

/// Report the error that ends this command.
pub fn error(msg: &str) {
    let held = take_pending();
    if held.is_empty() {
        write("error", msg);
    } else {
        write("error", &format!("{msg} (warnings: {})", held.join("; ")));
    }
    let json_to_stderr = CONFIG
        .get()
        .is_some_and(|c| c.file.is_none() && c.format == Format::Json);
    if json_to_stderr {
        eprintln!("{}", line("error", msg, Format::Json));
    } else {
        eprintln!("keel: {msg}");
    }
}

/// An error that clap reported before `init` could run (an unknown flag):
/// to the `--log` file only, since clap prints it on stderr itself. Callers
/// such as containerd read the reason from the log.
pub fn usage_error(file: PathBuf, format: Format, msg: &str) {
    init(Some(file), format, false);
    write("error", msg);
}

pub fn warn(msg: &str) {
    if holds_warnings() {
        if let Ok(mut p) = PENDING.lock() {
            p.push(msg.to_owned());
            return;
        }
    }
    write("warning", msg);
}

pub fn debug(msg: &str) {
    if CONFIG.get().is_some_and(|c| c.debug) {
        write("debug", msg);
        if CONFIG.get().is_some_and(|c| c.file.is_none()) {
            eprintln!("keel: debug: {msg}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_runc_fields() {
        let v: serde_json::Value = serde_json::from_str(&line(
            "error",
            "container does not exist: \"x\"",
            Format::Json,
        ))
        .unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container does not exist: \"x\"");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn text_line_quotes_the_message() {
        let l = line("error", "a \"b\"", Format::Text);
        assert!(l.contains("level=error msg=\"a \\\"b\\\"\""), "{l}");
    }
}
