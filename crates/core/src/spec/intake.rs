//! `intake/NAME.toml`: a process an owner proposes for a workflow, and how it ranks against
//! the others — value (hours a month at an hourly rate) and feasibility (an eval set can be
//! made, a model may see the data, the review load, the kind of output), with the reasons in
//! words, so that the small, specific, boring process that ships in weeks comes first.

use serde::Serialize;

use super::reader::{parse, Source, TableReader};
use super::types::{DataClass, RiskTier, WorkflowName};
use crate::Diagnostic;

/// The hourly rate the value is counted at when `[intake] hourly_rate` is not set.
pub const DEFAULT_HOURLY_RATE: f64 = 50.0;
/// Weeks in a month, on average.
const WEEKS_PER_MONTH: f64 = 52.0 / 12.0;

crate::text_enum! {
    /// What a wrong output costs the business.
    pub enum ErrorCost {
        Low => "low",
        Medium => "medium",
        High => "high",
    }
}

crate::text_enum! {
    /// The kind of output the process needs.
    pub enum IntakeOutput {
        /// One of a few labels (a queue, a category, yes or no).
        Labels => "labels",
        /// Fields extracted into a structure (JSON).
        Fields => "fields",
        /// Free text (a draft, a summary).
        Text => "text",
    }
}

/// One proposed process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Intake {
    pub name: String,
    /// The process, in a line.
    pub process: String,
    pub owner: String,
    pub cases_per_week: f64,
    pub minutes_per_case: f64,
    pub error_cost: ErrorCost,
    pub data_class: DataClass,
    pub risk: RiskTier,
    /// Whether known-good examples exist (past cases with the right answer).
    pub examples_available: bool,
    pub output: IntakeOutput,
}

impl Intake {
    /// Person-hours the process takes a month today.
    pub fn hours_per_month(&self) -> f64 {
        self.cases_per_week * self.minutes_per_case * WEEKS_PER_MONTH / 60.0
    }
}

/// Parse `intake/NAME.toml`; every problem is reported with its file, line and field.
pub fn parse_intake(name: &str, file: &str, text: &str) -> (Option<Intake>, Vec<Diagnostic>) {
    let source = Source::new(file, text);
    let intake = parse(&source, text).and_then(|doc| {
        let root = TableReader::root(&source, &doc);
        let intake = read_intake(name, &root);
        root.finish();
        intake
    });
    (intake, source.into_diagnostics())
}

fn read_intake(name: &str, t: &TableReader<'_, '_>) -> Option<Intake> {
    if let Err(message) = WorkflowName::parse(name) {
        t.source().report(None, "", message);
    }
    let process = t.required_string("process", "the process, in a line");
    let owner = t.required_string("owner", "the person accountable for the outcome");
    let positive = |key: &'static str, expected: &str| {
        let value = t.number(key);
        if t.line_of(key).is_none() {
            t.missing(key, expected);
        }
        match value {
            Some(v) if v <= 0.0 => {
                t.invalid(key, format!("must be more than 0, got {v}"));
                None
            }
            v => v,
        }
    };
    let cases_per_week = positive("cases_per_week", "how many cases a week, e.g. 400");
    let minutes_per_case = positive("minutes_per_case", "minutes a person spends on one, e.g. 3");
    let required_choice = |key: &'static str, expected: String| {
        if t.line_of(key).is_none() {
            t.missing(key, &expected);
        }
    };
    required_choice("error_cost", format!("one of: {}", ErrorCost::expected()));
    required_choice("data_class", format!("one of: {}", DataClass::expected()));
    required_choice("risk", format!("one of: {}", RiskTier::expected()));
    required_choice("output", format!("one of: {}", IntakeOutput::expected()));
    required_choice("examples_available", "true or false".into());
    let error_cost = t.choice("error_cost", ErrorCost::CHOICES);
    let data_class = t.choice("data_class", DataClass::CHOICES);
    let risk = t.choice("risk", RiskTier::CHOICES);
    let output = t.choice("output", IntakeOutput::CHOICES);
    let examples_available = t.boolean("examples_available");
    Some(Intake {
        name: name.to_string(),
        process: process?.value,
        owner: owner?.value,
        cases_per_week: cases_per_week?,
        minutes_per_case: minutes_per_case?,
        error_cost: error_cost?,
        data_class: data_class?,
        risk: risk?,
        examples_available: examples_available?,
        output: output?,
    })
}

/// How a proposed process ranks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub name: String,
    pub process: String,
    pub owner: String,
    pub hours_per_month: f64,
    /// Hours a month at the hourly rate.
    pub value_per_month: f64,
    /// 0 to 1: how likely it ships in weeks and holds up.
    pub feasibility: f64,
    /// What raised or lowered the feasibility, in words.
    pub reasons: Vec<String>,
    /// What must change before it can start at all.
    pub blockers: Vec<String>,
}

/// Assess one process. `model_for_class` says whether a model of the project may see its
/// data class.
pub fn assess(intake: &Intake, model_for_class: bool, hourly_rate: f64) -> Assessment {
    let mut feasibility = 1.0;
    let mut reasons = Vec::new();
    let mut blockers = Vec::new();
    let mut factor = |f: f64, why: String| {
        feasibility *= f;
        reasons.push(why);
    };
    match intake.output {
        IntakeOutput::Labels => factor(
            1.0,
            "labels: one right answer per case, the easiest output to evaluate".into(),
        ),
        IntakeOutput::Fields => factor(
            0.85,
            "fields: each field is checked against its known value".into(),
        ),
        IntakeOutput::Text => factor(
            0.7,
            "text: a good answer has many forms; scoring needs key points or a judge".into(),
        ),
    }
    if intake.examples_available {
        factor(
            1.0,
            "known-good examples exist: the eval set can be made from them".into(),
        );
    } else {
        factor(
            0.6,
            "no known-good examples: someone must answer 30 cases by hand before the first eval"
                .into(),
        );
    }
    match intake.risk {
        RiskTier::Low => factor(1.0, "low risk: outputs go straight out".into()),
        RiskTier::Medium => factor(
            0.9,
            "medium risk: a share of outputs is sampled for review".into(),
        ),
        RiskTier::High => factor(
            0.6,
            "high risk: every output waits for a person, which takes back much of the time saved"
                .into(),
        ),
    }
    match intake.error_cost {
        ErrorCost::Low => {}
        ErrorCost::Medium => factor(0.9, "a wrong output costs something".into()),
        ErrorCost::High => factor(
            0.7,
            "a wrong output is expensive: the gates must be strict".into(),
        ),
    }
    if !model_for_class {
        feasibility = 0.0;
        blockers.push(format!(
            "no model of shopfloor.toml may see {} data: add one (e.g. the embedded model, which stays on this machine) or lower the data class",
            intake.data_class
        ));
    }
    let hours = intake.hours_per_month();
    Assessment {
        name: intake.name.clone(),
        process: intake.process.clone(),
        owner: intake.owner.clone(),
        hours_per_month: hours,
        value_per_month: hours * hourly_rate,
        feasibility,
        reasons,
        blockers,
    }
}

/// The suggested order: what can start before what is blocked; then the most feasible first
/// (in steps of a tenth, so a small difference does not outrank value); then the most valuable.
pub fn rank(mut assessments: Vec<Assessment>) -> Vec<Assessment> {
    let band = |a: &Assessment| (a.feasibility * 10.0).round() as i64;
    assessments.sort_by(|a, b| {
        a.blockers
            .is_empty()
            .cmp(&b.blockers.is_empty())
            .reverse()
            .then(band(b).cmp(&band(a)))
            .then(b.value_per_month.total_cmp(&a.value_per_month))
            .then(a.name.cmp(&b.name))
    });
    assessments
}

/// Cases a workflow accepted from intake must have before its first eval.
pub const MIN_FIRST_EVAL_CASES: u64 = 30;

/// The draft workflow file for `intake`, from a template's workflow file: its description,
/// owner, risk and data class are the intake's; `stage` is draft; `[outcome]` counts the
/// intake's minutes per case and keeps its prediction (cases × minutes a week); `[eval] min_cases` asks for [`MIN_FIRST_EVAL_CASES`] of the
/// owner's own cases; examples drawn from the (still empty) dataset are left out.
pub fn draft_workflow(template: &str, intake: &Intake) -> Result<String, String> {
    use toml_edit::{value, DocumentMut, Item, Table};
    let mut doc: DocumentMut = template
        .parse()
        .map_err(|e| format!("the template is not valid TOML: {e}"))?;
    doc["description"] = value(intake.process.as_str());
    doc["owner"] = value(intake.owner.as_str());
    doc["stage"] = value("draft");
    doc["risk"] = value(intake.risk.as_str());
    doc["data_class"] = value(intake.data_class.as_str());
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let mut outcome = Table::new();
    outcome["kpi"] = value(format!("minutes per case: {}", intake.process));
    outcome["baseline"] = value(round(intake.minutes_per_case));
    outcome["target"] = value(round(intake.minutes_per_case / 4.0));
    outcome["minutes_saved_per_accepted"] = value(round(intake.minutes_per_case));
    outcome["predicted_minutes_saved_per_week"] =
        value(round(intake.cases_per_week * intake.minutes_per_case));
    doc["outcome"] = Item::Table(outcome);
    if let Some(prompt) = doc.get_mut("prompt").and_then(Item::as_table_mut) {
        prompt.remove("examples");
    }
    match doc.get_mut("eval").and_then(Item::as_table_mut) {
        Some(eval) => {
            eval["min_cases"] = value(MIN_FIRST_EVAL_CASES as i64);
        }
        None => return Err("the template has no [eval] table".into()),
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVOICES: &str = r#"
process = "Key supplier invoices into the ledger"
owner = "priya@acme.example"
cases_per_week = 400
minutes_per_case = 3
error_cost = "medium"
data_class = "confidential"
risk = "medium"
examples_available = true
output = "fields"
"#;

    #[test]
    fn an_intake_parses_and_its_hours_are_counted() {
        let (intake, problems) = parse_intake("invoices", "intake/invoices.toml", INVOICES);
        assert!(problems.is_empty(), "{problems:?}");
        let intake = intake.unwrap();
        assert_eq!(intake.output, IntakeOutput::Fields);
        // 400 × 3 min a week is 20 hours a week, 86.7 a month.
        assert!((intake.hours_per_month() - 86.666).abs() < 0.01);
    }

    #[test]
    fn every_problem_is_named_with_its_field() {
        let text = "process = \"x\"\ncases_per_week = 0\nminutes_per_case = \"3\"\nerror_cost = \"huge\"\ncolour = 1\n";
        let (intake, problems) = parse_intake("x", "intake/x.toml", text);
        assert!(intake.is_none());
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let all = text.join("\n");
        for expected in [
            "owner: missing",
            "cases_per_week: must be more than 0",
            "minutes_per_case",
            "error_cost",
            "colour: unknown key",
            "data_class: missing",
            "examples_available: missing",
        ] {
            assert!(all.contains(expected), "{expected}:\n{all}");
        }
    }

    fn proposal(
        name: &str,
        output: IntakeOutput,
        examples: bool,
        risk: RiskTier,
        cases: f64,
    ) -> Intake {
        Intake {
            name: name.into(),
            process: name.into(),
            owner: "o".into(),
            cases_per_week: cases,
            minutes_per_case: 2.0,
            error_cost: ErrorCost::Low,
            data_class: DataClass::Internal,
            risk,
            examples_available: examples,
            output,
        }
    }

    #[test]
    fn small_specific_boring_comes_first_and_blocked_last() {
        let triage = assess(
            &proposal("triage", IntakeOutput::Labels, true, RiskTier::Low, 200.0),
            true,
            50.0,
        );
        let contracts = assess(
            &proposal(
                "contracts",
                IntakeOutput::Labels,
                false,
                RiskTier::High,
                2000.0,
            ),
            true,
            50.0,
        );
        let replies = assess(
            &proposal(
                "replies",
                IntakeOutput::Text,
                true,
                RiskTier::Medium,
                1000.0,
            ),
            true,
            50.0,
        );
        let secret = assess(
            &proposal("secret", IntakeOutput::Labels, true, RiskTier::Low, 5000.0),
            false,
            50.0,
        );
        assert_eq!(triage.feasibility, 1.0);
        assert!((contracts.feasibility - 0.36).abs() < 1e-9, "{contracts:?}");
        assert!(contracts
            .reasons
            .iter()
            .any(|r| r.contains("30 cases by hand")));
        assert!(secret.blockers[0].contains("no model of shopfloor.toml may see internal data"));
        let order: Vec<String> = rank(vec![secret, contracts, replies, triage])
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(order, ["triage", "replies", "contracts", "secret"]);
    }

    #[test]
    fn a_draft_takes_the_intake_and_asks_for_cases_of_its_own() {
        let template = "description = \"t\"\nowner = \"a\"\nstage = \"pilot\"\nrisk = \"low\"\ndata_class = \"internal\"\n\n[outcome]\nkpi = \"x\"\nbaseline = 1\n\n[input]\nschema = { type = \"object\", required = [\"text\"], properties = { text = { type = \"string\" } } }\n\n[prompt]\nuser = \"{{ text }}\"\nexamples = { from = \"datasets/x.jsonl\", k = 4 }\n\n[output]\nlabels = [\"a\", \"b\"]\n\n[route]\nmodels = [\"local\"]\n\n[eval]\ndataset = \"datasets/x.jsonl\"\n";
        let (intake, _) = parse_intake("invoices", "intake/invoices.toml", INVOICES);
        let draft = draft_workflow(template, &intake.unwrap()).unwrap();
        for expected in [
            "description = \"Key supplier invoices into the ledger\"",
            "owner = \"priya@acme.example\"",
            "stage = \"draft\"",
            "risk = \"medium\"",
            "data_class = \"confidential\"",
            "kpi = \"minutes per case: Key supplier invoices into the ledger\"",
            "baseline = 3.0",
            "target = 0.8",
            "min_cases = 30",
            "predicted_minutes_saved_per_week = 1200.0",
        ] {
            assert!(draft.contains(expected), "{expected}:\n{draft}");
        }
        assert!(!draft.contains("examples"), "{draft}");
        let (parsed, problems) = crate::spec::parse_workflow("invoices", "w.toml", &draft);
        assert!(problems.is_empty(), "{problems:?}\n{draft}");
        assert_eq!(parsed.unwrap().eval.unwrap().min_cases, Some(30));
    }
}
