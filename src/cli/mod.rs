//! The command line, with runc's commands, flags and messages. The only layer
//! that speaks anyhow: it adds what the user asked for to the error chain.

mod cgroup_cmds;
mod run;

/// For `exec` in the foreground: the same signal and terminal handling as `run`.
pub(crate) fn block_forwarded_signals() -> nix::sys::signal::SigSet {
    run::block_forwarded_signals().0
}

pub(crate) fn forward_exec(
    pid: i32,
    pidfd: &std::os::fd::OwnedFd,
    console: Option<std::os::fd::OwnedFd>,
    mask: &nix::sys::signal::SigSet,
) -> Result<i32> {
    let _ = nix::sys::prctl::set_child_subreaper(true);
    run::forward(pid, pidfd, console, mask)
}

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

use crate::launch::{self, CreateOptions};
use crate::logging::{self, Format};
use crate::spec;
use crate::state::{self, Root, StateError, Status};

#[derive(Parser, Debug)]
#[command(
    name = "keel",
    about = "keel: a fast, safe OCI container runtime",
    disable_version_flag = true
)]
pub struct Cli {
    /// Root directory for container state
    #[arg(long, global = true, default_value = state::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Log file (default: stderr)
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub log_format: String,
    /// Debug logging
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not supported yet: create and run refuse it)
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Cgroup manager, podman's flag: cgroupfs (the default); systemd and disabled are not supported yet
    #[arg(long = "cgroup-manager", global = true, value_parser = ["cgroupfs", "systemd", "disabled"])]
    pub cgroup_manager: Option<String>,
    /// Accepted for runc compatibility (true|false|auto)
    #[arg(long = "rootless", id = "global_rootless", num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Print the version
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// Container id
    pub id: String,
    /// Path to the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the init's pid to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on ramfs)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N more fds (3..3+N-1) to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Unix socket that receives a pidfd of the init (SCM_RIGHTS, as runc 1.2)
    #[arg(long = "pidfd-socket")]
    pub pidfd_socket: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Container id
    pub id: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// process.json with the whole process ("-" for stdin)
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Do not wait for the process
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Working directory in the container
    #[arg(long)]
    pub cwd: Option<String>,
    /// Extra environment (NAME=value), repeatable
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional gids, repeatable
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Add a capability, repeatable
    #[arg(short = 'c', long = "cap")]
    pub cap: Vec<String>,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// AppArmor profile for the process
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label for the process
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Exec even if the container is paused
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Unix socket that receives a pidfd of the process (SCM_RIGHTS, as runc 1.2)
    #[arg(long = "pidfd-socket")]
    pub pidfd_socket: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a container (it waits for `start`)
    Create(CreateArgs),
    /// Start a created container
    Start { id: String },
    /// Create and start a container, and wait for it
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Detach from the container's process
        #[arg(short = 'd', long)]
        detach: bool,
        /// Do not delete the container after it exits
        #[arg(long)]
        keep: bool,
        /// Do not reap the container's orphans: keel is no subreaper (as runc)
        #[arg(long = "no-subreaper")]
        no_subreaper: bool,
    },
    /// Run a process in a running container
    Exec(Box<ExecArgs>),
    /// Print a container's state
    State { id: String },
    /// Send a signal to a container's init (default SIGTERM)
    Kill {
        id: String,
        signal: Option<String>,
        /// Signal every process of the container
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Delete a container
    Delete {
        id: String,
        /// Kill the container if it runs
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// List containers
    List {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        /// Print only the ids
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// List the processes of a container
    Ps {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        id: String,
        /// Arguments for ps(1) (default -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// Change a running container's resource limits
    Update(Box<cgroup_cmds::UpdateArgs>),
    /// Print resource statistics and OOM events as JSON lines
    Events {
        id: String,
        /// Print one stats event and exit
        #[arg(long)]
        stats: bool,
        /// Time between stats events
        #[arg(long, default_value = "5s")]
        interval: String,
    },
    /// Print the runtime-spec features document (JSON)
    Features,
    /// Write a default config.json
    Spec {
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// A config for a rootless container
        #[arg(long)]
        rootless: bool,
    },
}

/// runc accepts `-root` as well as `--root`: rewrite single-dash long flags,
/// up to the subcommand's first positional argument. runc's parser stops
/// there, and what follows (the container command of `exec`, the arguments of
/// `ps`) must reach the container untouched: `exec c1 find / -user root`.
fn normalise_args(args: Vec<String>) -> Vec<String> {
    // Building the clap command to list the flags is costly: only done when
    // some argument looks like `-flag` (rare: runc-style callers).
    let candidate = |a: &String| a.len() > 2 && a.starts_with('-') && !a.starts_with("--");
    if !args.iter().take_while(|a| *a != "--").any(candidate) {
        return args;
    }
    let mut root = Cli::command();
    // Adds `--help` and copies the global flags into every subcommand.
    root.build();
    let takes_value = |a: &clap::Arg| a.get_action().takes_values();
    let mut cmd = &root;
    let mut in_sub = false;
    let mut value_next = false;
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    out.extend(it.next());
    for a in it.by_ref() {
        if std::mem::take(&mut value_next) {
            out.push(a);
            continue;
        }
        if a == "--" {
            out.push(a);
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            value_next = !attached
                && cmd
                    .get_arguments()
                    .any(|x| x.get_long() == Some(name) && takes_value(x));
            out.push(a);
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let body = &a[1..];
            let (name, attached) = match body.split_once('=') {
                Some((n, _)) => (n, true),
                None => (body, false),
            };
            let long = (name.len() > 1)
                .then(|| cmd.get_arguments().find(|x| x.get_long() == Some(name)))
                .flatten();
            if let Some(x) = long {
                value_next = !attached && takes_value(x);
                out.push(format!("-{a}"));
                continue;
            }
            // Short flags, maybe clustered (`-dt`): one that takes a value ends
            // the cluster, its value attached (`-pfile`) or the next argument.
            for (i, c) in body.char_indices() {
                match cmd.get_arguments().find(|x| x.get_short() == Some(c)) {
                    Some(x) if takes_value(x) => {
                        value_next = i + c.len_utf8() == body.len();
                        break;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            out.push(a);
            continue;
        }
        if !in_sub {
            if let Some(sub) = cmd.find_subcommand(&a) {
                cmd = sub;
                in_sub = true;
                out.push(a);
                continue;
            }
        }
        // The first positional argument: the rest is left to clap as it is.
        out.push(a);
        break;
    }
    out.extend(it);
    out
}

/// Run the command line; returns the process exit code.
/// Global flags that take a value in the next argument (when not `--f=v`).
const GLOBAL_VALUE_FLAGS: [&str; 4] = ["root", "log", "log-format", "cgroup-manager"];

/// The global flags before the subcommand, as (index, name without dashes,
/// value), found by hand for what must happen before or without clap.
fn leading_globals(args: &[String]) -> Vec<(usize, &str, Option<&str>)> {
    let mut found = Vec::new();
    let mut i = 1;
    while let Some(a) = args.get(i) {
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            break; // the subcommand
        };
        match body.split_once('=') {
            Some((name, value)) => found.push((i, name, Some(value))),
            None if GLOBAL_VALUE_FLAGS.contains(&body) => {
                found.push((i, body, args.get(i + 1).map(String::as_str)));
                i += 1;
            }
            None => found.push((i, body, None)),
        }
        i += 1;
    }
    found
}

/// `--rootless` takes an optional value (runc: `--rootless true|false|auto`;
/// crun and podman may pass it bare): a bare one before the subcommand must
/// not take the subcommand for its value.
fn bare_rootless(mut args: Vec<String>) -> Vec<String> {
    if !args.iter().any(|a| a.ends_with("-rootless")) {
        return args; // every call but a few: nothing to scan
    }
    let bare: Vec<usize> = leading_globals(&args)
        .into_iter()
        .filter(|&(_, name, _)| name == "rootless")
        .filter(|&(i, _, _)| {
            !args[i].contains('=')
                && !matches!(
                    args.get(i + 1).map(String::as_str),
                    Some("true" | "false" | "auto")
                )
        })
        .map(|(i, _, _)| i)
        .collect();
    for i in bare {
        args[i] = "--rootless=true".into();
    }
    args
}

/// The global `--log FILE` and `--log-format F` of a command line clap
/// refused: the error still goes to that log.
fn log_usage_error(args: &[String], e: &clap::Error) {
    let (mut file, mut format) = (None, Format::Text);
    for (_, name, value) in leading_globals(args) {
        match (name, value) {
            ("log", Some(v)) => file = Some(PathBuf::from(v)),
            ("log-format", Some("json")) => format = Format::Json,
            _ => {}
        }
    }
    let Some(file) = file else { return };
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    logging::usage_error(file, format, first.strip_prefix("error: ").unwrap_or(first));
}

pub fn main() -> i32 {
    // Errors are printed with `{:#}`, never with their backtrace: do not let
    // RUST_BACKTRACE make anyhow capture one for each error (costly in a
    // static binary, where the unwinder first sorts every FDE).
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let args = normalise_args(bare_rootless(std::env::args().collect()));
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            if e.use_stderr() {
                log_usage_error(&args, &e);
            }
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    let format = match cli.log_format.as_str() {
        "json" => Format::Json,
        "text" => Format::Text,
        other => {
            eprintln!("keel: --log-format: unknown format {other:?} (want text or json)");
            return 1;
        }
    };
    logging::init(cli.log.clone(), format, cli.debug);
    if cli.version {
        // One write: a reader that stops after the first line (`grep -q`)
        // must not turn the rest into EPIPE.
        let text = format!(
            "keel version {}\ncommit: {}\nspec: {}\n",
            crate::VERSION,
            option_env!("KEEL_COMMIT").unwrap_or("unknown"),
            crate::OCI_VERSION
        );
        return match std::io::stdout().lock().write_all(text.as_bytes()) {
            Ok(()) => 0,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => SIGPIPE_STATUS,
            Err(_) => 1,
        };
    }
    let Some(cmd) = cli.cmd else {
        let _ = Cli::command().print_help();
        return 1;
    };
    // CVE-2019-5736: these run keel's code inside the container until execve, and a
    // container can make its process exec /proc/self/exe (docs/security.md).
    if matches!(cmd, Cmd::Create(_) | Cmd::Run { .. } | Cmd::Exec(_)) {
        crate::exeseal::ensure_sealed();
    }
    let fail_code = if matches!(cmd, Cmd::Run { .. } | Cmd::Exec(_)) {
        255
    } else {
        1
    };
    if cli.cgroup_manager.as_deref() == Some("disabled")
        && matches!(cmd, Cmd::Create(_) | Cmd::Run { .. })
    {
        logging::error(
            "--cgroup-manager disabled: containers without cgroups are not supported yet",
        );
        return fail_code;
    }
    let systemd = cli.systemd_cgroup || cli.cgroup_manager.as_deref() == Some("systemd");
    match dispatch(&cli.root, systemd, cmd) {
        Ok(code) => {
            logging::flush_warnings();
            code
        }
        // The reader of our output went away (`keel list | head -1`): end
        // quietly, as a program killed by SIGPIPE would.
        Err(e) if is_broken_pipe(&e) => {
            logging::flush_warnings();
            SIGPIPE_STATUS
        }
        Err(e) => {
            logging::error(&format!("{e:#}"));
            fail_code
        }
    }
}

/// keel has no systemd cgroup driver: say which unit the container's
/// `linux.cgroupsPath` would have been, or what is wrong with the path.
fn refuse_systemd(a: &CreateArgs) -> anyhow::Error {
    let path = std::fs::read_to_string(a.bundle.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["linux"]["cgroupsPath"].as_str().map(str::to_owned))
        .unwrap_or_default();
    match crate::cgroups::systemd::parse(&path, &a.id) {
        Ok(unit) => anyhow::anyhow!(
            "--systemd-cgroup: linux.cgroupsPath {path:?} would be {unit}: the systemd cgroup \
             driver is not supported yet; run without it (keel's cgroupfs driver)"
        ),
        Err(e) => anyhow::anyhow!("--systemd-cgroup: {e}"),
    }
}

/// What a shell reports for a process killed by SIGPIPE; keel ignores the
/// signal (Rust's runtime does) and exits with this status instead.
const SIGPIPE_STATUS: i32 = 128 + libc::SIGPIPE;

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn dispatch(root: &Path, systemd: bool, cmd: Cmd) -> Result<i32> {
    let root = Root::new(root);
    // Only a new cgroup needs the driver: containerd passes the flag on every
    // call, and the other commands work on what state.json recorded.
    if systemd {
        if let Cmd::Create(a) | Cmd::Run { create: a, .. } = &cmd {
            return Err(refuse_systemd(a));
        }
    }
    match cmd {
        Cmd::Create(a) => {
            create(&root, &a, false)?;
            Ok(0)
        }
        Cmd::Start { id } => {
            let dir = open_checked(&root, &id)?;
            // Bound before the init may exec, so that nothing it sends is lost.
            let relay = crate::notify::Relay::bind(&dir.path)?;
            let st = launch::start(&dir).with_context(|| format!("starting container {id:?}"))?;
            // Unlocked first: a poststart hook may run `keel state`.
            drop(dir);
            crate::hooks::poststart(&st);
            if let Some(r) = relay {
                r.wait_ready(&st)
                    .with_context(|| format!("sd_notify relay of container {id:?}"))?;
            }
            Ok(0)
        }
        Cmd::Run {
            create: a,
            detach,
            keep,
            no_subreaper,
        } => run::run(&root, &a, detach, keep, !no_subreaper),
        Cmd::Exec(a) => exec(&root, &a),
        Cmd::State { id } => {
            let dir = open_checked(&root, &id)?;
            let st = dir.load()?;
            let doc = state::oci_state(&st, dir.status(&st));
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &doc)?;
            out.flush()?;
            Ok(0)
        }
        Cmd::Kill { id, signal, all } => {
            let sig = launch::parse_signal(signal.as_deref().unwrap_or("SIGTERM"))
                .map_err(anyhow::Error::msg)?;
            let dir = open_checked(&root, &id)?;
            launch::kill(&dir, sig, all)?;
            Ok(0)
        }
        Cmd::Delete { id, force } => {
            spec::validate_id(&id)?;
            match root.open(&id) {
                Ok(dir) => launch::delete(dir, force)
                    .with_context(|| format!("deleting container {id:?}"))?,
                Err(StateError::NotExist(_)) if force => {
                    // A half-created dir (no state.json) is removed too.
                    let _ = std::fs::remove_dir_all(root.dir_of(&id));
                }
                Err(e) => return Err(e.into()),
            }
            Ok(0)
        }
        Cmd::List { format, quiet } => list(&root, &format, quiet),
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => cgroup_cmds::ps(&open_checked(&root, &id)?, &format, &ps_args),
        Cmd::Pause { id } => cgroup_cmds::pause(&open_checked(&root, &id)?, true),
        Cmd::Resume { id } => cgroup_cmds::pause(&open_checked(&root, &id)?, false),
        Cmd::Update(a) => {
            let dir = open_checked(&root, &a.id)?;
            cgroup_cmds::update(&dir, &a)
        }
        Cmd::Events {
            id,
            stats,
            interval,
        } => cgroup_cmds::events(&open_checked(&root, &id)?, stats, &interval),
        Cmd::Features => crate::features::print(),
        Cmd::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let json = spec::default_spec_json(
                rootless,
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
            Ok(0)
        }
    }
}

fn exec(root: &Root, a: &ExecArgs) -> Result<i32> {
    let dir = open_checked(root, &a.id)?;
    let process = match &a.process {
        Some(p) => crate::exec::load_process(p).map_err(anyhow::Error::msg)?,
        None => {
            let base: oci_spec::runtime::Process = dir.load_json(state::PROCESS_FILE)?;
            let flags = crate::exec::ProcessFlags {
                args: a.args.clone(),
                tty: a.tty,
                cwd: a.cwd.clone(),
                env: a.env.clone(),
                user: a.user.clone(),
                additional_gids: a.additional_gids.clone(),
                caps: a.cap.clone(),
                no_new_privs: a.no_new_privs,
                apparmor: a.apparmor.clone(),
                process_label: a.process_label.clone(),
            };
            crate::exec::process_from_flags(&base, &flags).map_err(anyhow::Error::msg)?
        }
    };
    let o = crate::exec::ExecOptions {
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
        pidfd_socket: a.pidfd_socket.clone(),
    };
    // The lock is released first: other commands may act on the container while this one lives.
    let code = crate::exec::exec(dir, &process, &o)
        .with_context(|| format!("exec in container {:?}", a.id))?;
    Ok(code)
}

/// Socket activation passed through as runc does (create and run, not exec):
/// with LISTEN_PID our pid and LISTEN_FDS=N, fds 3..3+N-1 go to the container
/// on top of --preserve-fds, which sees LISTEN_FDS=N and LISTEN_PID=1.
fn listen_fds() -> u32 {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(n) if ours => n,
        _ => 0,
    }
}

fn open_checked(root: &Root, id: &str) -> Result<state::ContainerDir> {
    spec::validate_id(id)?;
    Ok(root.open(id)?)
}

/// Load and validate the bundle's config, then create. Returns the created container.
fn create(root: &Root, a: &CreateArgs, foreground: bool) -> Result<launch::Created> {
    spec::validate_id(&a.id)?;
    let listen = listen_fds();
    let bundle = std::fs::canonicalize(&a.bundle)
        .with_context(|| format!("bundle {}", a.bundle.display()))?;
    let spec = spec::load(&bundle)?;
    spec::validate(&spec, &bundle, true)?;
    let rootfs = spec::rootfs_path(&spec, &bundle);
    let o = CreateOptions {
        plan: crate::plan::Options {
            no_pivot: a.no_pivot,
            no_new_keyring: a.no_new_keyring,
            preserve_fds: a.preserve_fds.saturating_add(listen),
            seccomp_cache: Some(crate::seccomp::cache_dir(&root.path)),
            extra_env: if listen > 0 {
                vec![format!("LISTEN_FDS={listen}"), "LISTEN_PID=1".into()]
            } else {
                Vec::new()
            },
        },
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        foreground,
        pidfd_socket: a.pidfd_socket.clone(),
    };
    let c = launch::create(root, &a.id, &bundle, &rootfs, &spec, &o)
        .with_context(|| format!("creating container {:?}", a.id))?;
    Ok(c)
}

fn list(root: &Root, format: &str, quiet: bool) -> Result<i32> {
    let mut rows = Vec::new();
    for id in root.list() {
        // Read without the lock: list must not wait for a container being started.
        let Ok(data) = std::fs::read(root.dir_of(&id).join(state::STATE_FILE)) else {
            continue;
        };
        let Ok(st) = serde_json::from_slice::<state::State>(&data) else {
            continue;
        };
        let status = if !state::is_alive(st.pid, st.start_time) {
            Status::Stopped
        } else if root.dir_of(&id).join(state::FIFO).exists() {
            Status::Created
        } else if st.cgroup.as_ref().is_some_and(|c| c.is_frozen()) {
            Status::Paused
        } else {
            Status::Running
        };
        rows.push((st, status));
    }
    let mut out = std::io::stdout().lock();
    if quiet {
        for (st, _) in &rows {
            writeln!(out, "{}", st.id)?;
        }
        return Ok(0);
    }
    match format {
        "json" => {
            let docs: Vec<_> = rows
                .iter()
                .map(|(st, s)| state::oci_state(st, *s).with_owner(&st.owner))
                .collect();
            serde_json::to_writer(&mut out, &docs)?;
            writeln!(out)?;
        }
        "table" => {
            let w = rows
                .iter()
                .map(|(s, _)| s.id.len())
                .max()
                .unwrap_or(2)
                .max(2)
                + 3;
            writeln!(
                out,
                "{:w$}PID         STATUS      BUNDLE{:40}CREATED                          OWNER",
                "ID", ""
            )?;
            for (st, s) in &rows {
                let pid = if *s == Status::Stopped { 0 } else { st.pid };
                writeln!(
                    out,
                    "{:w$}{:<12}{:<12}{:46}{:33}{}",
                    st.id,
                    pid,
                    s.as_str(),
                    st.bundle.display(),
                    st.created,
                    st.owner
                )?;
            }
        }
        other => bail!("invalid format option {other:?} (want table or json)"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalise_args(args.iter().map(|a| a.to_string()).collect())
    }

    #[test]
    fn single_dash_long_flags_are_accepted() {
        assert_eq!(
            norm(&[
                "keel",
                "-root",
                "/r",
                "run",
                "-bundle=/b",
                "-d",
                "x",
                "--",
                "-root"
            ]),
            [
                "keel",
                "--root",
                "/r",
                "run",
                "--bundle=/b",
                "-d",
                "x",
                "--",
                "-root"
            ]
        );
        assert_eq!(
            norm(&["keel", "-log-format", "json", "run", "-bundle", "B", "id"]),
            ["keel", "--log-format", "json", "run", "--bundle", "B", "id"]
        );
        // Global flags after the subcommand, and -help.
        assert_eq!(
            norm(&["keel", "delete", "-root", "/r", "-force", "id"]),
            ["keel", "delete", "--root", "/r", "--force", "id"]
        );
        assert_eq!(
            norm(&["keel", "state", "-help"]),
            ["keel", "state", "--help"]
        );
    }

    #[test]
    fn flag_values_are_not_rewritten() {
        // A value that looks like a flag is the flag's value, not a flag.
        assert_eq!(
            norm(&["keel", "--root", "-debug", "-log", "-debug", "state", "id"]),
            ["keel", "--root", "-debug", "--log", "-debug", "state", "id"]
        );
        assert_eq!(
            norm(&["keel", "exec", "-p", "-tty", "-detach", "id"]),
            ["keel", "exec", "-p", "-tty", "--detach", "id"]
        );
        // A short flag's value attached, or after a cluster.
        assert_eq!(
            norm(&["keel", "exec", "-dp", "-tty", "-pfile", "-detach", "id"]),
            ["keel", "exec", "-dp", "-tty", "-pfile", "--detach", "id"]
        );
    }

    #[test]
    fn bare_rootless_does_not_take_the_subcommand() {
        let fix = |a: &[&str]| bare_rootless(a.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            fix(&["keel", "--root", "/r", "--rootless", "list", "-q"]),
            ["keel", "--root", "/r", "--rootless=true", "list", "-q"]
        );
        assert_eq!(
            fix(&["keel", "-rootless", "false", "list"]),
            ["keel", "-rootless", "false", "list"]
        );
        assert_eq!(
            fix(&["keel", "--rootless=auto", "list"]),
            ["keel", "--rootless=auto", "list"]
        );
        // After the subcommand, arguments are the command's own.
        assert_eq!(
            fix(&["keel", "exec", "c1", "tool", "--rootless", "x"]),
            ["keel", "exec", "c1", "tool", "--rootless", "x"]
        );
        // A --root value is not the subcommand.
        assert_eq!(
            fix(&["keel", "--root", "--rootless", "--rootless", "state", "x"]),
            [
                "keel",
                "--root",
                "--rootless",
                "--rootless=true",
                "state",
                "x"
            ]
        );
    }

    #[test]
    fn the_container_command_is_left_alone() {
        assert_eq!(
            norm(&["keel", "exec", "c1", "find", "/", "-user", "root"]),
            ["keel", "exec", "c1", "find", "/", "-user", "root"]
        );
        assert_eq!(
            norm(&["keel", "exec", "-tty", "-user", "0", "c1", "java", "-version", "-user"]),
            ["keel", "exec", "--tty", "--user", "0", "c1", "java", "-version", "-user"]
        );
        assert_eq!(
            norm(&["keel", "ps", "c1", "-ef"]),
            ["keel", "ps", "c1", "-ef"]
        );
        assert_eq!(
            norm(&["keel", "ps", "-format", "json", "c1", "--", "-ef", "-format"]),
            ["keel", "ps", "--format", "json", "c1", "--", "-ef", "-format"]
        );
        assert_eq!(
            norm(&["keel", "ps", "c1", "-format", "json"]),
            ["keel", "ps", "c1", "-format", "json"]
        );
    }

    #[test]
    fn rewritten_args_parse_as_runc_would() {
        let cli = Cli::try_parse_from(norm(&["keel", "exec", "c1", "find", "/", "-user", "root"]))
            .unwrap();
        let Some(Cmd::Exec(e)) = cli.cmd else {
            panic!("not exec: {:?}", cli.cmd)
        };
        assert_eq!((e.id.as_str(), e.user), ("c1", None));
        assert_eq!(e.args, ["find", "/", "-user", "root"]);

        let cli = Cli::try_parse_from(norm(&["keel", "run", "-bundle", "B", "id"])).unwrap();
        let Some(Cmd::Run { create, .. }) = cli.cmd else {
            panic!("not run: {:?}", cli.cmd)
        };
        assert_eq!(
            (create.id.as_str(), create.bundle),
            ("id", PathBuf::from("B"))
        );

        for args in [
            &["keel", "ps", "c1", "-ef"][..],
            &["keel", "ps", "c1", "--", "-ef"],
        ] {
            let cli = Cli::try_parse_from(norm(args)).unwrap();
            let Some(Cmd::Ps { id, ps_args, .. }) = cli.cmd else {
                panic!("not ps: {:?}", cli.cmd)
            };
            assert_eq!(
                (id.as_str(), ps_args),
                ("c1", vec!["-ef".to_string()]),
                "{args:?}"
            );
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
