//! Closed sets of words (statuses, kinds) as enums that parse from and print
//! to their wire text, so every service states them the same way.

/// Declares a `snake_case` string enum with `as_str`, `Display`, `FromStr`
/// (whose error lists the allowed words), serde and an OpenAPI schema.
///
/// The calling crate must depend on `serde` and `utoipa`, whose derives the
/// expansion uses.
#[macro_export]
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "must be one of {}; got {other:?}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}
