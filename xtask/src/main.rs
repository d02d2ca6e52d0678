//! `xtask gen-docs OUT_DIR`: man pages (OUT_DIR/man/keel.8 and one
//! keel-COMMAND.8 per command, as runc ships them) and shell completions
//! (OUT_DIR/completions/: bash, zsh, fish), generated from keel's clap
//! definitions, so that they always match the binary built from the same tree.

use std::fs;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

fn gen_docs(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;

    let cmd = keel::cli::Cli::command()
        .version(keel::VERSION)
        .author("the keel authors");
    write_man(&man, "keel", cmd.clone())?;
    for sub in cmd.get_subcommands() {
        // keel-create(8), whose synopsis reads `keel create ...`.
        let name = format!("keel-{}", sub.get_name());
        let bin = format!("keel {}", sub.get_name());
        let sub = sub.clone().name(name.clone()).bin_name(bin);
        write_man(&man, &name, sub)?;
    }

    let mut cmd = cmd;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd, "keel", &completions)?;
        println!("{}", path.display());
    }
    Ok(())
}

fn write_man(dir: &Path, name: &str, cmd: clap::Command) -> std::io::Result<()> {
    let path = dir.join(format!("{name}.8"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .section("8")
        .manual("keel manual")
        .render(&mut buf)?;
    fs::write(&path, buf)?;
    println!("{}", path.display());
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [task, out] if task == "gen-docs" => {
            if let Err(e) = gen_docs(Path::new(out)) {
                eprintln!("xtask gen-docs: {e}");
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("usage: xtask gen-docs OUT_DIR");
            std::process::exit(2);
        }
    }
}
