//! sd_notify client for tests/notify.rs, which builds it as a static binary and
//! copies it into the container (busybox has no way to send a unix datagram).
//! Sends each argument as one datagram to $NOTIFY_SOCKET, in order.

use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        eprintln!("notify-client: NOTIFY_SOCKET is not set");
        return ExitCode::from(2);
    };
    let sock = match UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("notify-client: socket: {e}");
            return ExitCode::FAILURE;
        }
    };
    for msg in std::env::args_os().skip(1) {
        if let Err(e) = sock.send_to(msg.as_encoded_bytes(), &path) {
            eprintln!("notify-client: sending to {}: {e}", path.to_string_lossy());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
