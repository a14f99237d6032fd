//! What the AWS CLI does to a command line before parsing it, done here before clap reads it:
//!
//! 1. Global options (`--output`, `--query`, `--endpoint-url`, ... all of
//!    [`ClientOptions`]) given before the command name are moved after it, so
//!    `mapreg --output text get-apis` means `mapreg get-apis --output text`.
//! 2. `file://PATH` (or `fileb://PATH`) as any value of a client command is replaced by the
//!    file's contents, as the AWS CLI reads parameter files (verbatim, trailing newline kept).
//! 3. `--generate-cli-skeleton [input|yaml-input]` prints a template of the command's
//!    parameters, keyed as AWS keys them (`ApiId`, `ProtocolType`, `Tags`, ...), and nothing is
//!    sent.
//! 4. `--cli-input-json DOC` / `--cli-input-yaml DOC` turn each key of DOC into its flag
//!    (`"ApiMappingKey": "v1"` -> `--api-mapping-key=v1`), unless that flag is on the command
//!    line already: the command line wins, as in the AWS CLI.
//!
//! The parameters' names, kinds and help come from the clap definition of each command, so the
//! skeleton cannot drift from the flags.

use std::any::TypeId;
use std::ffi::OsString;

use clap::{Arg, ArgAction, Args, CommandFactory};
use serde_json::{Map, Value, json};

use super::Cli;
use super::args::ClientOptions;
use super::error::CliError;
use super::yaml;

/// What to do with a command line.
#[derive(Debug)]
pub enum Prepared {
    /// Parse these arguments.
    Args(Vec<OsString>),
    /// Print this (a skeleton) and exit 0.
    Print(String),
}

/// Subcommands that are not client commands: their arguments are left alone.
const NOT_CLIENT: &[&str] = &[
    "serve",
    "hash-token",
    "check",
    "completion",
    "snapshot",
    "help",
];

/// Rewrites `args` (with the program name first) as described in the module doc.
pub fn prepare(args: Vec<OsString>) -> Result<Prepared, CliError> {
    // A non-UTF-8 argument: nothing of ours applies; clap reports it.
    let Some(args) = args
        .iter()
        .map(|a| a.to_str().map(str::to_string))
        .collect::<Option<Vec<String>>>()
    else {
        return Ok(Prepared::Args(args));
    };
    let globals = global_options();
    let mut hoisted = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let Some(spec) = globals.iter().find(|g| g.matches(&args[i])) else {
            break;
        };
        hoisted.push(args[i].clone());
        if spec.takes_value(&args[i]) && i + 1 < args.len() {
            let optional = spec.long == "generate-cli-skeleton";
            if !optional || is_skeleton_kind(&args[i + 1]) {
                i += 1;
                hoisted.push(args[i].clone());
            }
        }
        i += 1;
    }
    let Some(name) = args.get(i).cloned() else {
        return Ok(Prepared::Args(to_os(args)));
    };
    let root = Cli::command();
    let Some(sub) = root
        .find_subcommand(&name)
        .filter(|_| !NOT_CLIENT.contains(&name.as_str()))
    else {
        return Ok(Prepared::Args(to_os(args)));
    };
    let mut rest: Vec<String> = hoisted;
    rest.extend(args[i + 1..].iter().cloned());
    let rest = rest
        .into_iter()
        .map(|a| expand_file(&a))
        .collect::<Result<Vec<_>, _>>()?;

    let (rest, skeleton) = take_option(rest, "generate-cli-skeleton", true)?;
    if let Some(kind) = skeleton {
        let params = parameters(sub);
        return match kind.as_deref().unwrap_or("input") {
            "input" => Ok(Prepared::Print(super::output::pretty_json(&skeleton_json(
                &params,
            )))),
            "yaml-input" => Ok(Prepared::Print(skeleton_yaml(&params))),
            other => Err(CliError::Usage(format!(
                "--generate-cli-skeleton takes input or yaml-input, not {other:?}"
            ))),
        };
    }
    let (rest, json_doc) = take_option(rest, "cli-input-json", false)?;
    let (mut rest, yaml_doc) = take_option(rest, "cli-input-yaml", false)?;
    let doc = match (json_doc.flatten(), yaml_doc.flatten()) {
        (Some(_), Some(_)) => {
            return Err(CliError::Usage(
                "give --cli-input-json or --cli-input-yaml, not both".into(),
            ));
        }
        (Some(j), None) => Some(serde_json::from_str::<Value>(&j).map_err(|e| {
            CliError::Usage(format!("Error parsing parameter '--cli-input-json': {e}"))
        })?),
        (None, Some(y)) => Some(serde_yaml_ng::from_str::<Value>(&y).map_err(|e| {
            CliError::Usage(format!("Error parsing parameter '--cli-input-yaml': {e}"))
        })?),
        (None, None) => None,
    };
    if let Some(doc) = doc {
        let params = parameters(sub);
        let given = given_flags(sub, &rest);
        rest.extend(input_flags(&params, &doc, &given)?);
    }
    let mut out = vec![args[0].clone(), name];
    out.extend(rest);
    Ok(Prepared::Args(to_os(out)))
}

fn to_os(args: Vec<String>) -> Vec<OsString> {
    args.into_iter().map(OsString::from).collect()
}

fn is_skeleton_kind(s: &str) -> bool {
    matches!(s, "input" | "yaml-input" | "output")
}

/// One global option: its long name and aliases, whether it takes a value.
struct GlobalOption {
    long: String,
    names: Vec<String>,
    takes_value: bool,
}

impl GlobalOption {
    fn matches(&self, arg: &str) -> bool {
        let Some(name) = arg.strip_prefix("--") else {
            return false;
        };
        let name = name.split('=').next().unwrap_or(name);
        self.names.iter().any(|n| n == name)
    }

    /// Whether the next argument is this option's value (not when given as `--opt=value`).
    fn takes_value(&self, arg: &str) -> bool {
        self.takes_value && !arg.contains('=')
    }
}

fn global_options() -> Vec<GlobalOption> {
    let cmd = ClientOptions::augment_args(clap::Command::new("options"));
    cmd.get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_string();
            let mut names = vec![long.clone()];
            names.extend(
                a.get_all_aliases()
                    .unwrap_or_default()
                    .into_iter()
                    .map(str::to_string),
            );
            Some(GlobalOption {
                long,
                names,
                takes_value: a.get_action().takes_values(),
            })
        })
        .collect()
}

/// `file://PATH` (or `--flag=file://PATH`) replaced by the file's contents.
fn expand_file(arg: &str) -> Result<String, CliError> {
    let (prefix, value) = match arg.split_once('=') {
        Some((flag, v)) if flag.starts_with("--") => (format!("{flag}="), v),
        _ => (String::new(), arg),
    };
    let Some(path) = value
        .strip_prefix("file://")
        .or_else(|| value.strip_prefix("fileb://"))
    else {
        return Ok(arg.to_string());
    };
    let contents = std::fs::read_to_string(path).map_err(|e| {
        CliError::Usage(format!(
            "Error parsing parameter: Unable to load paramfile {value}: {e}"
        ))
    })?;
    Ok(format!("{prefix}{contents}"))
}

/// Removes every `--name VALUE` / `--name=VALUE` (the value optional when `optional_value`)
/// and returns the last value: `Some(None)` for the flag without a value.
#[allow(clippy::type_complexity)]
fn take_option(
    args: Vec<String>,
    name: &str,
    optional_value: bool,
) -> Result<(Vec<String>, Option<Option<String>>), CliError> {
    let flag = format!("--{name}");
    let with_value = format!("--{name}=");
    let mut kept = Vec::with_capacity(args.len());
    let mut found = None;
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(&with_value) {
            found = Some(Some(v.to_string()));
        } else if a == flag {
            let next_is_value = match it.peek() {
                Some(n) if optional_value => is_skeleton_kind(n),
                Some(_) => true,
                None => false,
            };
            if next_is_value {
                found = Some(it.next());
            } else if optional_value {
                found = Some(None);
            } else {
                return Err(CliError::Usage(format!("{flag} needs a value")));
            }
        } else {
            kept.push(a);
        }
    }
    Ok((kept, found))
}

/// One parameter of a command, as --cli-input-json keys it.
struct Parameter {
    /// The AWS member name (`ApiMappingKey`; `NextToken` for `--starting-token`).
    key: String,
    /// The flag's long name.
    long: String,
    /// Whether the command cannot run without it.
    required: bool,
    /// The flag's help.
    help: String,
    /// Its allowed values, if a fixed set.
    values: Vec<String>,
    /// The template value.
    example: Value,
    /// Only in the skeleton if true (the CLI's own paging flags are not AWS parameters).
    in_skeleton: bool,
}

/// The parameters of `cmd`: its own flags, not the global options.
fn parameters(cmd: &clap::Command) -> Vec<Parameter> {
    let globals = global_options();
    cmd.get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_string();
            if long == "help" || globals.iter().any(|g| g.long == long) {
                return None;
            }
            let key = match long.as_str() {
                "starting-token" => "NextToken".to_string(),
                other => pascal_case(other),
            };
            let values: Vec<String> = a
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_string())
                .collect();
            Some(Parameter {
                example: example(a, &long, &values),
                in_skeleton: !matches!(long.as_str(), "max-items" | "no-paginate"),
                key,
                required: a.is_required_set(),
                help: a.get_help().map(|h| h.to_string()).unwrap_or_default(),
                values,
                long,
            })
        })
        .collect()
}

fn pascal_case(kebab: &str) -> String {
    kebab
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn multiple(a: &Arg) -> bool {
    a.get_num_args().is_some_and(|n| n.max_values() > 1)
}

/// The skeleton's value of a flag: `""`, `0`, `false`, the first allowed value, or the shape
/// of a structured value.
fn example(a: &Arg, long: &str, values: &[String]) -> Value {
    match long {
        "tags" => return json!({"KeyName": ""}),
        "domain-name-configurations" => {
            return json!([{"CertificateArn": "", "EndpointType": "REGIONAL",
                           "SecurityPolicy": "TLS_1_2"}]);
        }
        _ => {}
    }
    if matches!(a.get_action(), ArgAction::SetTrue) {
        return json!(false);
    }
    let one = match values.first() {
        Some(v) => json!(v.to_ascii_uppercase()),
        None => {
            let t = a.get_value_parser().type_id();
            if t == TypeId::of::<u64>() || t == TypeId::of::<u32>() || t == TypeId::of::<i32>() {
                json!(0)
            } else {
                json!("")
            }
        }
    };
    if multiple(a) { json!([one]) } else { one }
}

fn skeleton_json(params: &[Parameter]) -> Value {
    let map: Map<String, Value> = params
        .iter()
        .filter(|p| p.in_skeleton)
        .map(|p| (p.key.clone(), p.example.clone()))
        .collect();
    Value::Object(map)
}

/// The YAML template: each key with its example value and, as the AWS CLI's, a comment saying
/// whether it is required, what it is and its valid values.
fn skeleton_yaml(params: &[Parameter]) -> String {
    let mut params: Vec<&Parameter> = params.iter().filter(|p| p.in_skeleton).collect();
    params.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = String::new();
    for p in params {
        let mut comment = String::new();
        if p.required {
            comment.push_str("[REQUIRED] ");
        }
        comment.push_str(p.help.lines().next().unwrap_or(""));
        if !p.values.is_empty() {
            let upper: Vec<String> = p.values.iter().map(|v| v.to_ascii_uppercase()).collect();
            comment.push_str(&format!(" Valid values are: {}.", upper.join(", ")));
        }
        let body = yaml::render(&json!({ p.key.clone(): p.example.clone() }));
        let mut lines = body.lines();
        let first = lines.next().unwrap_or("");
        out.push_str(first);
        out.push_str(" # ");
        out.push_str(comment.trim());
        out.push('\n');
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The long names of the flags already on the command line (aliases resolved).
fn given_flags(cmd: &clap::Command, args: &[String]) -> Vec<String> {
    args.iter()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a))
        .filter_map(|name| {
            cmd.get_arguments().find_map(|arg| {
                let long = arg.get_long()?;
                let aliases = arg.get_all_aliases().unwrap_or_default();
                (long == name || aliases.contains(&name)).then(|| long.to_string())
            })
        })
        .collect()
}

/// The flags a --cli-input-json/--cli-input-yaml document stands for, leaving out those in
/// `given`.
fn input_flags(
    params: &[Parameter],
    doc: &Value,
    given: &[String],
) -> Result<Vec<String>, CliError> {
    let Value::Object(doc) = doc else {
        return Err(CliError::Usage(
            "the --cli-input-json/--cli-input-yaml document must be an object of parameters".into(),
        ));
    };
    let mut flags = Vec::new();
    for (key, value) in doc {
        let Some(p) = params.iter().find(|p| &p.key == key) else {
            let keys: Vec<&str> = params.iter().map(|p| p.key.as_str()).collect();
            return Err(CliError::Usage(format!(
                "Parameter validation failed:\nUnknown parameter in input: \"{key}\", must be one of: {}",
                keys.join(", ")
            )));
        };
        if given.contains(&p.long) {
            continue;
        }
        let flag = format!("--{}", p.long);
        match value {
            Value::Null | Value::Bool(false) => {}
            // Every numeric parameter's 0 is its default.
            Value::Number(n) if n.as_u64() == Some(0) => {}
            Value::Bool(true) => flags.push(flag),
            Value::String(s) => flags.push(format!("{flag}={s}")),
            Value::Number(n) => flags.push(format!("{flag}={n}")),
            Value::Array(items)
                if items.iter().all(|v| v.is_string())
                    && p.long != "domain-name-configurations" =>
            {
                let parts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                flags.push(format!("{flag}={}", parts.join(",")));
            }
            structured => flags.push(format!("{flag}={structured}")),
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        match prepare(args).expect("prepare") {
            Prepared::Args(a) => a.into_iter().map(|a| a.into_string().unwrap()).collect(),
            Prepared::Print(p) => vec![p],
        }
    }

    #[test]
    fn globals_before_the_command_move_after_it() {
        assert_eq!(
            prepared(&[
                "mapreg",
                "--output",
                "text",
                "--query=Items",
                "--debug",
                "get-apis",
                "--max-items",
                "1"
            ]),
            [
                "mapreg",
                "get-apis",
                "--output",
                "text",
                "--query=Items",
                "--debug",
                "--max-items",
                "1"
            ]
        );
        assert_eq!(
            prepared(&["mapreg", "--endpoint", "http://h:1", "get-apis"]),
            ["mapreg", "get-apis", "--endpoint", "http://h:1"]
        );
        // Not for the server's commands, nor --help.
        assert_eq!(
            prepared(&["mapreg", "--output", "text", "serve"]),
            ["mapreg", "--output", "text", "serve"]
        );
        assert_eq!(prepared(&["mapreg", "--help"]), ["mapreg", "--help"]);
    }

    #[test]
    fn file_values_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.txt");
        std::fs::write(&path, "from a file").unwrap();
        let url = format!("file://{}", path.display());
        let eq = format!("--description={url}");
        assert_eq!(
            prepared(&["mapreg", "create-api", "--description", &url, &eq]),
            [
                "mapreg",
                "create-api",
                "--description",
                "from a file",
                "--description=from a file"
            ]
        );
        let missing = ["mapreg", "get-api", "--api-id", "file:///nonexistent/x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(matches!(prepare(missing), Err(CliError::Usage(m)) if m.contains("paramfile")));
    }

    #[test]
    fn skeleton_has_the_aws_keys() {
        let p = prepared(&["mapreg", "create-api", "--generate-cli-skeleton"]);
        let v: Value = serde_json::from_str(&p[0]).unwrap();
        assert_eq!(v["Name"], "");
        assert_eq!(v["ProtocolType"], "HTTP");
        assert_eq!(v["Tags"], json!({"KeyName": ""}));
        assert_eq!(v["RouteSelectionExpression"], "");
        assert_eq!(v["ValidateOnly"], false);
        let p = prepared(&[
            "mapreg",
            "get-api-mappings",
            "--generate-cli-skeleton",
            "input",
        ]);
        let v: Value = serde_json::from_str(&p[0]).unwrap();
        assert_eq!(
            v,
            json!({"DomainName": "", "MaxResults": 0, "NextToken": ""})
        );
        let y = prepared(&[
            "mapreg",
            "--generate-cli-skeleton",
            "yaml-input",
            "create-api-mapping",
        ]);
        assert!(y[0].contains("DomainName: '' # [REQUIRED]"), "{}", y[0]);
        assert!(y[0].contains("ApiMappingKey: ''"), "{}", y[0]);
    }

    #[test]
    fn input_documents_become_flags_the_command_line_wins() {
        let doc = r#"{"Name": "from-json", "ProtocolType": "WEBSOCKET", "Tags": {"a": "b"},
                      "RouteSelectionExpression": "$request.body.action", "ValidateOnly": true}"#;
        let a = prepared(&[
            "mapreg",
            "create-api",
            "--cli-input-json",
            doc,
            "--name",
            "flag",
        ]);
        assert_eq!(a[..4], ["mapreg", "create-api", "--name", "flag"]);
        assert!(
            a.contains(&"--protocol-type=WEBSOCKET".to_string()),
            "{a:?}"
        );
        assert!(a.contains(&r#"--tags={"a":"b"}"#.to_string()), "{a:?}");
        assert!(a.contains(&"--validate-only".to_string()), "{a:?}");
        assert!(!a.iter().any(|x| x.contains("from-json")), "{a:?}");
        let y = prepared(&["mapreg", "get-api", "--cli-input-yaml", "ApiId: abc\n"]);
        assert_eq!(y, ["mapreg", "get-api", "--api-id=abc"]);
        let bad = ["mapreg", "get-api", "--cli-input-json", r#"{"Nope": 1}"#]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(
            matches!(prepare(bad), Err(CliError::Usage(m)) if m.contains("Unknown parameter in input: \"Nope\""))
        );
    }
}
