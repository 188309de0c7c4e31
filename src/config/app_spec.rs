//! `APP_MODULE`: which module to import and which callable (or factory call)
//! to serve. Parsed here only for shape; the worker evaluates it.

/// `module:expression`, where expression is a name or a factory call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// The dotted module path, e.g. `examples.hello`.
    pub module: String,
    /// What follows the colon: `application` by default, a variable name, or
    /// a call with literal arguments, e.g. `create_app('x', debug=True)`. The
    /// worker checks it with Python's `ast` and never evaluates other code.
    pub expression: String,
}

impl AppSpec {
    /// Parses `module[:expression]`.
    pub fn parse(text: &str) -> Result<AppSpec, String> {
        let (module, expression) = match text.split_once(':') {
            Some((m, e)) => (m.trim(), e.trim()),
            None => (text.trim(), "application"),
        };
        let valid_module = !module.is_empty()
            && module.split('.').all(|part| {
                let mut chars = part.chars();
                matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
                    && chars.all(|c| c == '_' || c.is_alphanumeric())
            });
        if !valid_module {
            return Err(format!("'{text}' is not MODULE:VARIABLE (module name '{module}' is not a dotted Python name)"));
        }
        if expression.is_empty() {
            return Err(format!("'{text}' names no variable after the colon"));
        }
        Ok(AppSpec {
            module: module.to_string(),
            expression: expression.to_string(),
        })
    }
}

impl std::fmt::Display for AppSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.module, self.expression)
    }
}
