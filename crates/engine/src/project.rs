//! Loading a project folder: `shopfloor.toml` and `workflows/*.toml`, validated as a whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shopfloor_core::output::OutputValidator;
use shopfloor_core::spec::{
    parse_config, parse_workflow, validate_project, ProjectConfig, ProjectFiles, Workflow,
};
use shopfloor_core::template::{Patterns, PromptTemplates, PATTERNS_DIR};
use shopfloor_core::version::workflow_version;
use shopfloor_core::Diagnostic;

use crate::examples::ExampleSet;
use crate::EngineError;

/// The config file's name inside a project folder.
pub const CONFIG_FILE: &str = "shopfloor.toml";
/// The folder holding workflow files.
pub const WORKFLOWS_DIR: &str = "workflows";

/// A workflow ready to run: its spec, version, and compiled templates and validators.
pub struct LoadedWorkflow {
    pub spec: Workflow,
    pub version: String,
    pub templates: PromptTemplates,
    pub output: OutputValidator,
    pub input_schema: jsonschema::Validator,
    /// `[prompt] examples`, read with the project.
    pub examples: Option<Arc<ExampleSet>>,
}

/// A valid project.
pub struct Project {
    pub root: PathBuf,
    pub config: ProjectConfig,
    pub workflows: BTreeMap<String, Arc<LoadedWorkflow>>,
    /// `patterns/*.j2`: prompt macros the workflows' templates may import.
    pub patterns: Patterns,
}

impl Project {
    /// Read and validate the project in `root`. Every problem in every file is reported at once
    /// as [`EngineError::InvalidProject`].
    pub fn load(root: &Path) -> Result<Self, EngineError> {
        let config_path = root.join(CONFIG_FILE);
        let config_bytes = std::fs::read(&config_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                EngineError::NoProject {
                    dir: root.to_path_buf(),
                }
            } else {
                EngineError::Io {
                    path: config_path.clone(),
                    source: e,
                }
            }
        })?;
        let mut diagnostics = Vec::new();
        let config_text = utf8_text(CONFIG_FILE, config_bytes).unwrap_or_else(|d| {
            diagnostics.push(d);
            String::new()
        });
        let (config, found) = parse_config(CONFIG_FILE, &config_text);
        diagnostics.extend(found);
        let mut workflows = Vec::new();
        for (name, path) in workflow_files(root)? {
            let file = format!("{WORKFLOWS_DIR}/{name}.toml");
            let bytes = std::fs::read(&path).map_err(EngineError::io(path.clone()))?;
            let text = match utf8_text(&file, bytes) {
                Ok(text) => text,
                Err(d) => {
                    diagnostics.push(d);
                    continue;
                }
            };
            let (workflow, found) = parse_workflow(&name, &file, &text);
            diagnostics.extend(found);
            workflows.extend(workflow);
        }
        let patterns = read_patterns(root, &mut diagnostics)?;
        let exists = |relative: &str| root.join(relative).is_file();
        diagnostics.extend(validate_project(&ProjectFiles {
            config: &config,
            workflows: &workflows,
            file_exists: &exists,
            patterns: &patterns,
        }));
        if !diagnostics.is_empty() {
            return Err(EngineError::InvalidProject(diagnostics));
        }
        let mut loaded = BTreeMap::new();
        for spec in workflows {
            let name = spec.name.as_str().to_string();
            loaded.insert(
                name,
                Arc::new(load_workflow(root, &config, &patterns, spec)?),
            );
        }
        Ok(Self {
            root: root.to_path_buf(),
            config,
            workflows: loaded,
            patterns,
        })
    }

    /// The workflow `name` as its variant `variant` makes it (`[variants.NAME]`), compiled,
    /// with the version of its own.
    pub fn variant(&self, name: &str, variant: &str) -> Result<Arc<LoadedWorkflow>, EngineError> {
        let spec = self.variant_spec(name, variant)?;
        self.compile(spec)
    }

    /// The spec of variant `variant` of `name`, or an error listing its variants.
    pub fn variant_spec(&self, name: &str, variant: &str) -> Result<Workflow, EngineError> {
        let loaded = self.workflow(name)?;
        loaded.spec.variant(variant).ok_or_else(|| {
            let known: Vec<&str> = loaded
                .spec
                .variants
                .iter()
                .map(|v| v.name.value.as_str())
                .collect();
            EngineError::InvalidField {
                field: "variant",
                message: format!(
                    "workflow {name} has no variant \"{variant}\"; its variants: {}",
                    if known.is_empty() {
                        "none (add a [variants.NAME] table to its file)".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            }
        })
    }

    /// Compile a spec of this project (a variant, other examples) as a workflow to run.
    pub fn compile(&self, spec: Workflow) -> Result<Arc<LoadedWorkflow>, EngineError> {
        Ok(Arc::new(load_workflow(
            &self.root,
            &self.config,
            &self.patterns,
            spec,
        )?))
    }

    /// A workflow by name, or an error listing the known ones.
    pub fn workflow(&self, name: &str) -> Result<Arc<LoadedWorkflow>, EngineError> {
        self.workflows
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownWorkflow {
                name: name.to_string(),
                known: self.workflows.keys().cloned().collect(),
            })
    }
}

/// Compile a validated workflow: its templates, examples, version, validators.
fn load_workflow(
    root: &Path,
    config: &ProjectConfig,
    patterns: &Patterns,
    spec: Workflow,
) -> Result<LoadedWorkflow, EngineError> {
    let templates = PromptTemplates::compile_with(&spec.prompt, patterns).map_err(|errors| {
        EngineError::InvalidProject(
            errors
                .into_iter()
                .map(|e| Diagnostic::new(&spec.file, None, e.field, e.message))
                .collect(),
        )
    })?;
    let examples = match &spec.prompt.examples {
        Some(examples) => Some(Arc::new(ExampleSet::load(
            root, &spec.file, examples, &templates,
        )?)),
        None => None,
    };
    let version = workflow_version(
        &spec,
        &config.models,
        examples.as_ref().map(|e| e.hash.as_str()),
        templates.patterns_used(),
    );
    let output = OutputValidator::new(&spec.output.contract).map_err(|m| {
        EngineError::InvalidProject(vec![Diagnostic::new(&spec.file, None, "output", m)])
    })?;
    let input_schema = jsonschema::validator_for(&spec.input_schema).map_err(|e| {
        EngineError::InvalidProject(vec![Diagnostic::new(
            &spec.file,
            None,
            "input.schema",
            e.to_string(),
        )])
    })?;
    Ok(LoadedWorkflow {
        spec,
        version,
        templates,
        output,
        input_schema,
        examples,
    })
}

fn workflow_files(root: &Path) -> Result<Vec<(String, PathBuf)>, EngineError> {
    let dir = root.join(WORKFLOWS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(EngineError::Io {
                path: dir,
                source: e,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(EngineError::io(dir.clone()))?.path();
        if path.extension().is_some_and(|x| x == "toml") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                files.push((stem.to_string(), path.clone()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Every `patterns/*.j2` of the project, by path; a file that is not UTF-8 is a problem.
fn read_patterns(root: &Path, diagnostics: &mut Vec<Diagnostic>) -> Result<Patterns, EngineError> {
    let dir = root.join(PATTERNS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Patterns::default()),
        Err(e) => {
            return Err(EngineError::Io {
                path: dir,
                source: e,
            })
        }
    };
    let mut sources = Vec::new();
    for entry in entries {
        let path = entry.map_err(EngineError::io(dir.clone()))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".j2") {
            continue;
        }
        let file = format!("{PATTERNS_DIR}/{name}");
        let bytes = std::fs::read(&path).map_err(EngineError::io(path.clone()))?;
        match utf8_text(&file, bytes) {
            Ok(text) => sources.push((file, text)),
            Err(d) => diagnostics.push(d),
        }
    }
    Ok(Patterns::new(sources))
}

/// `bytes` of `file` as text, or where they stop being UTF-8 (a binary file, another encoding).
fn utf8_text(file: &str, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..valid].iter().filter(|b| **b == b'\n').count() + 1;
        let column = valid - bytes[..valid].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) + 1;
        Diagnostic::new(
            file,
            Some(line),
            "",
            format!(
                "not UTF-8 text (byte {column} of the line is 0x{:02x}); save the file as UTF-8 TOML",
                bytes[valid]
            ),
        )
    })
}
