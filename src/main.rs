//! keel's command line; everything else lives in the library.
fn main() {
    std::process::exit(keel::cli::main());
}
