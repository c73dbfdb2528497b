//! Test support: checks a family's Rust params struct against the WGSL `struct Params` it is uploaded
//! into (same field names, offsets and scalar types, same size), parsing the WGSL with naga, the
//! shader compiler wgpu itself uses. A field added, reordered or retyped on one side only fails here.
//! Each family file calls `params_layout_test!` (defined in gpu/mod.rs) to get its test.

use super::launch::Family;
use wgpu::naga;

/// A Rust scalar type and its WGSL name.
pub trait WgslScalar {
    const WGSL: &'static str;
}
impl WgslScalar for u32 {
    const WGSL: &'static str = "u32";
}
impl WgslScalar for f32 {
    const WGSL: &'static str = "f32";
}

/// One field of a Rust params struct: name, byte offset, WGSL type name.
#[derive(Debug, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub ty: &'static str,
}

/// The WGSL name of the type a field accessor returns.
pub fn scalar_of<P, T: WgslScalar>(_: fn(&P) -> &T) -> &'static str {
    T::WGSL
}

/// `field!(Params, m)`: the [`Field`] of `Params::m`.
macro_rules! field {
    ($ty:ty, $f:ident) => {
        $crate::backend::gpu::layout::Field {
            name: stringify!($f),
            offset: std::mem::offset_of!($ty, $f),
            ty: $crate::backend::gpu::layout::scalar_of::<$ty, _>(|p: &$ty| &p.$f),
        }
    };
}
pub(crate) use field;

/// The fields (name, offset, type) and size of `struct Params` in `family`'s WGSL.
pub fn wgsl_params(family: Family) -> (Vec<(String, usize, &'static str)>, usize) {
    let src = family.wgsl();
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{family:?}: {}", e.emit_to_string(&src)));
    let (members, span) = module
        .types
        .iter()
        .find_map(|(_, t)| match (&t.name, &t.inner) {
            (Some(name), naga::TypeInner::Struct { members, span }) if name == "Params" => {
                Some((members.clone(), *span))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{family:?}: no `struct Params` in its WGSL"));
    let fields = members
        .iter()
        .map(|m| {
            let ty = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar {
                    kind: naga::ScalarKind::Uint,
                    width: 4,
                }) => "u32",
                naga::TypeInner::Scalar(naga::Scalar {
                    kind: naga::ScalarKind::Float,
                    width: 4,
                }) => "f32",
                ref other => panic!("{family:?}: Params field of unsupported type {other:?}"),
            };
            (m.name.clone().unwrap_or_default(), m.offset as usize, ty)
        })
        .collect();
    (fields, span as usize)
}

/// Panics, naming both layouts, unless `P` (whose fields are `rust`) matches `family`'s WGSL Params.
pub fn assert_matches_wgsl<P>(family: Family, rust: &[Field]) {
    let (wgsl, span) = wgsl_params(family);
    let ours: Vec<(String, usize, &str)> = rust
        .iter()
        .map(|f| (f.name.to_string(), f.offset, f.ty))
        .collect();
    assert_eq!(
        ours, wgsl,
        "{family:?}: the Rust params struct (left) and the WGSL struct Params (right) differ"
    );
    assert_eq!(
        std::mem::size_of::<P>(),
        span,
        "{family:?}: Rust params struct size differs from the WGSL struct's"
    );
}

mod tests {
    use super::*;

    #[repr(C)]
    struct Swapped {
        k: u32,
        m: u32,
        n: u32,
        accumulate: u32,
        k_split: u32,
        splits: u32,
        _pad0: u32,
        _pad1: f32,
    }

    /// Every family's WGSL parses and validates (subgroup operations allowed, as on a device with
    /// SUBGROUP): a shader error shows here, on any machine, not only where its kernel runs.
    #[test]
    fn every_family_validates() {
        use wgpu::naga::valid::{
            Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags, Validator,
        };
        for family in Family::ALL {
            let module = naga::front::wgsl::parse_str(&family.wgsl())
                .unwrap_or_else(|e| panic!("{family:?}: {}", e.emit_to_string(&family.wgsl())));
            Validator::new(ValidationFlags::all(), Capabilities::all())
                .subgroup_stages(ShaderStages::COMPUTE)
                .subgroup_operations(SubgroupOperationSet::all())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{family:?}: {e:?}"));
        }
    }

    /// The check can fail: two fields swapped and one retyped are caught.
    #[test]
    #[should_panic(expected = "differ")]
    fn a_mismatched_struct_is_rejected() {
        assert_matches_wgsl::<Swapped>(
            Family::Matmul,
            &[
                field!(Swapped, k),
                field!(Swapped, m),
                field!(Swapped, n),
                field!(Swapped, accumulate),
                field!(Swapped, k_split),
                field!(Swapped, splits),
                field!(Swapped, _pad0),
                field!(Swapped, _pad1),
            ],
        );
    }
}
