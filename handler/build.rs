//! Embeds `host.json` and `function-definitions/*/function.json` into the binary, so the
//! standalone host is driven by exactly the definitions the Functions host reads.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read at run time, not with `env!`: a build script compiled in another checkout (a copied
    // target dir) would otherwise embed that checkout's definitions.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("..");
    let definitions = root.join("function-definitions");
    println!("cargo::rerun-if-changed={}", definitions.display());
    println!(
        "cargo::rerun-if-changed={}",
        root.join("host.json").display()
    );
    let mut names: Vec<String> = std::fs::read_dir(&definitions)
        .expect("function-definitions/ exists")
        .map(|entry| {
            entry
                .expect("readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| definitions.join(name).join("function.json").is_file())
        .collect();
    names.sort();
    let mut code = String::from(
        "/// `(function name, function.json)` for every function, by name.\npub const FUNCTIONS: &[(&str, &str)] = &[\n",
    );
    for name in &names {
        let path = definitions.join(name).join("function.json");
        println!("cargo::rerun-if-changed={}", path.display());
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.canonicalize().expect("path").display().to_string()
        )
        .expect("write");
    }
    code.push_str("];\n/// The app's host.json.\n");
    writeln!(
        code,
        "pub const HOST_JSON: &str = include_str!({:?});",
        root.join("host.json")
            .canonicalize()
            .expect("host.json")
            .display()
            .to_string()
    )
    .expect("write");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("definitions.rs");
    std::fs::write(out, code).expect("write definitions.rs");
}
