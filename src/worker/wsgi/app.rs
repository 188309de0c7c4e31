//! Loading the application: import `module`, then resolve the expression
//! after the colon (a name, or a factory call with literal arguments only).
//!
//! The expression is parsed with Python's `ast` and never evaluated as code:
//! it must be a name or a dotted attribute chain (`app`, `api.wsgi`), or a
//! call of one whose positional and keyword arguments are literals (each
//! checked with `ast.literal_eval`). A factory call may not reach through
//! another module (`app:os.system('x')` is refused): the command line is
//! trusted, but the expression stays among the app module's own objects.
//! Error messages follow gunicorn's.

use crate::config::AppSpec;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

pyo3::create_exception!(
    rgunicorn,
    AppImportError,
    PyException,
    "The application named on the command line cannot be found or used."
);

/// Imports and returns the WSGI callable named by `spec`.
pub fn load(py: Python<'_>, spec: &AppSpec) -> PyResult<Py<PyAny>> {
    let target = parse_expression(py, &spec.expression)?;
    let module = import(py, &spec.module)?;
    let mut object = module.clone().into_any();
    for (depth, name) in target.path.iter().enumerate() {
        if depth > 0 && target.call.is_some() && object.is_instance_of::<PyModule>() {
            return Err(AppImportError::new_err(format!(
                "Failed to parse '{}': a factory must be defined in '{}', not reached \
                 through another module.",
                spec.expression, spec.module
            )));
        }
        object = object.getattr(name.as_str()).map_err(|err| {
            if err.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) {
                AppImportError::new_err(format!(
                    "Failed to find attribute '{}' in '{}'.",
                    target.path.join("."),
                    spec.module
                ))
            } else {
                err
            }
        })?;
    }
    if let Some((args, kwargs)) = &target.call {
        object = object.call(args, Some(kwargs))?;
    }
    if object.is_none() {
        return Err(AppImportError::new_err(format!(
            "Failed to find application object: '{}'.",
            spec.expression
        )));
    }
    if !object.is_callable() {
        return Err(AppImportError::new_err(
            "Application object must be callable.",
        ));
    }
    Ok(object.unbind())
}

/// What the expression names: an attribute path from the module, and, for
/// a factory call, its literal arguments.
struct Target<'py> {
    path: Vec<String>,
    call: Option<(Bound<'py, PyTuple>, Bound<'py, PyDict>)>,
}

/// Imports `module`; when it is missing but names a `.py` file, says how to
/// write it (as gunicorn does).
fn import<'py>(py: Python<'py>, module: &str) -> PyResult<Bound<'py, PyAny>> {
    let importlib = py.import("importlib")?;
    importlib
        .call_method1("import_module", (module,))
        .map_err(|err| {
            let missing = err.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py);
            if let Some(stem) = module.strip_suffix(".py").filter(|_| missing) {
                AppImportError::new_err(format!(
                    "Failed to find application, did you mean '{stem}:<object>'?"
                ))
            } else {
                err
            }
        })
}

/// The error for an expression we do not accept.
fn unparsable(expression: &str) -> PyErr {
    AppImportError::new_err(format!(
        "Failed to parse '{expression}' as an attribute name or function call."
    ))
}

/// Parses `expression` with `ast` into a [`Target`].
fn parse_expression<'py>(py: Python<'py>, expression: &str) -> PyResult<Target<'py>> {
    let ast = py.import("ast")?;
    let tree = ast
        .call_method1("parse", (expression.trim(), "<app>", "eval"))
        .map_err(|_| unparsable(expression))?;
    let body = tree.getattr("body")?;
    if body.is_instance(&ast.getattr("Call")?)? {
        let path =
            attribute_path(&ast, &body.getattr("func")?)?.ok_or_else(|| unparsable(expression))?;
        let call = literal_arguments(py, &ast, &body).map_err(|_| unparsable(expression))?;
        Ok(Target {
            path,
            call: Some(call),
        })
    } else {
        let path = attribute_path(&ast, &body)?.ok_or_else(|| unparsable(expression))?;
        Ok(Target { path, call: None })
    }
}

/// `a.b.c` as `["a", "b", "c"]`, or None when `node` is not a Name or a
/// chain of Attributes ending in one.
fn attribute_path(
    ast: &Bound<'_, PyModule>,
    node: &Bound<'_, PyAny>,
) -> PyResult<Option<Vec<String>>> {
    let mut path = Vec::new();
    let mut node = node.clone();
    loop {
        if node.is_instance(&ast.getattr("Name")?)? {
            path.push(node.getattr("id")?.extract()?);
            path.reverse();
            return Ok(Some(path));
        }
        if !node.is_instance(&ast.getattr("Attribute")?)? {
            return Ok(None);
        }
        path.push(node.getattr("attr")?.extract()?);
        node = node.getattr("value")?;
    }
}

/// The positional and keyword arguments of a Call node, each a literal
/// (`ast.literal_eval` fails on anything else, including `*a` and `**k`).
fn literal_arguments<'py>(
    py: Python<'py>,
    ast: &Bound<'py, PyModule>,
    call: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyDict>)> {
    let literal_eval = ast.getattr("literal_eval")?;
    let args = PyList::empty(py);
    for node in call.getattr("args")?.try_iter()? {
        args.append(literal_eval.call1((node?,))?)?;
    }
    let kwargs = PyDict::new(py);
    for keyword in call.getattr("keywords")?.try_iter()? {
        let keyword = keyword?;
        let name = keyword.getattr("arg")?;
        if name.is_none() {
            return Err(AppImportError::new_err(
                "**kwargs are not literal arguments",
            ));
        }
        kwargs.set_item(name, literal_eval.call1((keyword.getattr("value")?,))?)?;
    }
    Ok((args.to_tuple(), kwargs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::wsgi::traceback::one_line;

    const MODULE: &std::ffi::CStr = c"
calls = []

def application(environ, start_response):
    return []

def create_app(name, debug=False):
    calls.append((name, debug))
    def app(environ, start_response):
        return [name.encode()]
    return app

class api:
    class v1:
        wsgi = application

    @staticmethod
    def create(name):
        return create_app(name)

import os

not_callable = 42
nothing = None
";

    /// Registers the test module in `sys.modules` (once).
    fn test_module(py: Python<'_>) -> &'static str {
        super::super::test_support::python();
        let name = "rgunicorn_test_app";
        let sys_modules = py.import("sys").unwrap().getattr("modules").unwrap();
        if !sys_modules.contains(name).unwrap() {
            let module =
                PyModule::from_code(py, MODULE, c"rgunicorn_test_app.py", c"rgunicorn_test_app")
                    .unwrap();
            sys_modules.set_item(name, module).unwrap();
        }
        name
    }

    fn spec(module: &str, expression: &str) -> AppSpec {
        AppSpec {
            module: module.to_string(),
            expression: expression.to_string(),
        }
    }

    fn load_error(py: Python<'_>, module: &str, expression: &str) -> String {
        one_line(py, &load(py, &spec(module, expression)).unwrap_err())
    }

    #[test]
    fn loads_a_name_and_an_attribute_chain() {
        super::super::test_support::attach(|py| {
            let module = test_module(py);
            let app = load(py, &spec(module, "application")).unwrap();
            let expected = py.import(module).unwrap().getattr("application").unwrap();
            assert!(app.bind(py).is(&expected));
            let app = load(py, &spec(module, "api.v1.wsgi")).unwrap();
            assert!(app.bind(py).is(&expected));
        });
    }

    #[test]
    fn factory_call_gets_literal_positional_and_keyword_arguments() {
        super::super::test_support::attach(|py| {
            let module = test_module(py);
            let app = load(py, &spec(module, "create_app('x', debug=True)")).unwrap();
            assert!(app.bind(py).is_callable());
            let calls = py.import(module).unwrap().getattr("calls").unwrap();
            let last: (String, bool) = calls.get_item(-1).unwrap().extract().unwrap();
            assert_eq!(last, ("x".to_string(), true));
        });
    }

    #[test]
    fn non_literal_arguments_and_other_expressions_are_refused_unevaluated() {
        super::super::test_support::attach(|py| {
            let module = test_module(py);
            for expression in [
                "create_app(os.system('touch /tmp/rgunicorn-pwned'))",
                "create_app(*names)",
                "create_app(**options)",
                "create_app('x')()",
                "application[0]",
                "lambda: application",
                "application; import os",
                "1 + 2",
                "",
            ] {
                assert_eq!(
                    load_error(py, module, expression),
                    format!(
                        "rgunicorn.AppImportError: Failed to parse '{expression}' as an \
                         attribute name or function call."
                    ),
                );
            }
            assert!(!std::path::Path::new("/tmp/rgunicorn-pwned").exists());
        });
    }

    #[test]
    fn factory_reached_through_another_module_is_refused_uncalled() {
        super::super::test_support::attach(|py| {
            let module = test_module(py);
            let marker = std::env::temp_dir().join(format!("rgunicorn-os-{}", std::process::id()));
            let expression = format!("os.system('touch {}')", marker.display());
            assert_eq!(
                load_error(py, module, &expression),
                format!(
                    "rgunicorn.AppImportError: Failed to parse '{expression}': a factory must \
                     be defined in 'rgunicorn_test_app', not reached through another module."
                )
            );
            assert!(!marker.exists());
            // A factory on a class of the module itself is fine.
            let app = load(py, &spec(module, "api.create('y')")).unwrap();
            assert!(app.bind(py).is_callable());
        });
    }

    #[test]
    fn missing_attribute_names_the_module_and_the_name() {
        super::super::test_support::attach(|py| {
            let module = test_module(py);
            assert_eq!(
                load_error(py, module, "missing"),
                "rgunicorn.AppImportError: Failed to find attribute 'missing' in \
                 'rgunicorn_test_app'."
            );
            assert_eq!(
                load_error(py, module, "api.v2"),
                "rgunicorn.AppImportError: Failed to find attribute 'api.v2' in \
                 'rgunicorn_test_app'."
            );
        });
    }

    #[test]
    fn the_application_must_be_callable_and_not_none() {
        super::super::test_support::attach(|py| {
            let module = test_module(py);
            assert_eq!(
                load_error(py, module, "not_callable"),
                "rgunicorn.AppImportError: Application object must be callable."
            );
            assert_eq!(
                load_error(py, module, "nothing"),
                "rgunicorn.AppImportError: Failed to find application object: 'nothing'."
            );
        });
    }

    #[test]
    fn missing_module_is_a_module_not_found_error() {
        super::super::test_support::attach(|py| {
            test_module(py);
            assert_eq!(
                load_error(py, "rgunicorn_no_such_module", "app"),
                "ModuleNotFoundError: No module named 'rgunicorn_no_such_module'"
            );
        });
    }

    #[test]
    fn factory_errors_propagate_with_their_own_type() {
        super::super::test_support::attach(|py| {
            let module = test_module(py);
            let line = load_error(py, module, "create_app()");
            assert!(line.starts_with("TypeError: "), "{line}");
        });
    }
}
