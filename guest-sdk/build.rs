//! Generates the `channel` world's bindings (`$OUT_DIR/channel_bindings.rs`, included by
//! `src/bindings.rs`) as `wit_bindgen::generate!` would, minus one thing: the description of
//! the world's imports that `wit-bindgen` puts in a custom section of the SDK's rlib.
//!
//! Why: the linker keeps the custom sections of every object file it loads, and which of the
//! SDK's object files (codegen units) a component loads depends on what rustc happened to put
//! together, down to generic instances shared between crates. Whenever a *journey* loaded the
//! object holding the channel world's description, its component claimed the channel world's
//! types, which the host refuses (`forbidden_import` naming `waymark:journey/channel-types`).
//! The description is redundant anyway: `export_channel!` expands `wit-bindgen`'s export macro,
//! which describes the whole channel world, imports and exports, in the adapter's own crate.
//!
//! The journey world keeps `generate!`: its description is harmless in either kind of component.

use std::path::Path;

use wit_bindgen_core::{wit_parser::Resolve, Files, WorldGenerator};

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let wit = Path::new(&manifest).join("..").join("wit");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", wit.display());

    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(&wit)
        .unwrap_or_else(|e| panic!("cannot read {}: {e:?}", wit.display()));
    let world = resolve
        .select_world(&[package], Some("channel"))
        .expect("wit/ declares world `channel`");

    // The options `generate!` was given for this world.
    let opts = wit_bindgen_rust::Opts {
        pub_export_macro: true,
        default_bindings_module: Some("waymark_guest::bindings::channel".into()),
        disable_custom_section_link_helpers: true,
        generate_all: true,
        ..Default::default()
    };
    let mut files = Files::default();
    opts.build()
        .generate(&mut resolve, world, &mut files)
        .expect("wit-bindgen generates the channel world");
    let (_, source) = files.iter().next().expect("one generated file");
    let source = std::str::from_utf8(source).expect("generated Rust is UTF-8");

    // Compile out the imports-only description (`...-with-all-of-its-exports-removed:encoded
    // world`); the export macro's own description (`...:imports and exports`) stays.
    let mut removed = 0;
    let source: String = source
        .lines()
        .map(|line| {
            if line.contains("link_section") && line.contains("exports-removed:encoded world") {
                removed += 1;
                "#[cfg(any())]"
            } else {
                line
            }
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    assert_eq!(
        removed, 1,
        "expected exactly one imports-only world description in wit-bindgen's output; \
         has wit-bindgen changed how it emits it?"
    );

    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("channel_bindings.rs");
    std::fs::write(&out, source).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
