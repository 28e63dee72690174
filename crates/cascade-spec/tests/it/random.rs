//! Random bytes and random YAML never panic, and every error points inside the file.

use proptest::prelude::*;

fn check(bytes: &[u8]) {
    match cascade_spec::parse_pipeline_bytes("random.yaml", bytes) {
        Ok(p) => assert!(!p.jobs.is_empty()),
        Err(errors) => {
            assert!(!errors.diagnostics.is_empty());
            for d in &errors.diagnostics {
                assert!(d.span.offset <= errors.source.len());
                assert!(
                    errors
                        .source
                        .is_char_boundary(d.span.offset.min(errors.source.len()))
                );
                let _ = errors.line_column(d);
            }
            // Rendering must not panic either.
            let _ = crate::render(&errors);
        }
    }
}

/// YAML-ish text built from the pieces pipelines are made of.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("jobs:".to_owned()),
        Just("\n  ".to_owned()),
        Just("\n    ".to_owned()),
        Just("run: ".to_owned()),
        Just("needs: [".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("${{ ".to_owned()),
        Just(" }}".to_owned()),
        Just("needs.a.outputs.x".to_owned()),
        Just("matrix: { k: [1, 2] }".to_owned()),
        Just("for_each: ".to_owned()),
        Just("if: ".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("a:".to_owned()),
        Just("b:".to_owned()),
        Just("- ".to_owned()),
        Just("|\n".to_owned()),
        Just("é✓".to_owned()),
        "[a-z0-9 :,.{}\\[\\]$'\"!=|&()-]{0,8}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn random_yaml_never_panics(text in yamlish()) {
        check(text.as_bytes());
    }

    #[test]
    fn random_job_bodies_never_panic(body in yamlish()) {
        let text = format!("jobs:\n  a:\n    run: make\n  b:\n    {body}\n");
        check(text.as_bytes());
    }
}
