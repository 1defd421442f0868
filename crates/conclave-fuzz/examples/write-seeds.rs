//! Writes each target's fresh seeds into `fuzz/corpus/<target>/seed-NN`, replacing the old
//! `seed-*` files (entries a fuzzer added under other names stay).
//!
//! `cargo run -p conclave-fuzz --example write-seeds [TARGET...]`

fn main() -> std::io::Result<()> {
    let only: Vec<String> = std::env::args().skip(1).collect();
    for target in conclave_fuzz::targets() {
        if !only.is_empty() && !only.iter().any(|t| t == target.name) {
            continue;
        }
        let dir = conclave_fuzz::corpus::dir(target.name);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
            {
                std::fs::remove_file(path)?;
            }
        }
        let seeds = (target.seeds)();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed)?;
        }
        println!(
            "{}: {} seeds in {}",
            target.name,
            seeds.len(),
            dir.display()
        );
    }
    Ok(())
}
