"""Every rule id a finding can carry (`Diagnostic.rule`), with what it catches and how to fix it.

This is the documentation of the rules: scripts/generate_rule_docs.py writes docs/rules.md from it,
and tests/core/test_rules.py checks that every id the code can report is here, at the severities the
code reports it with, and that nothing here is reported nowhere. The registry lives in `core`
because every stage that reads a deployment (load, schema, sources, checks) emits ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployer.core.diagnostics import Severity

ERROR = (Severity.ERROR,)
WARNING = (Severity.WARNING,)
NOTE = (Severity.NOTE,)
ERROR_OR_WARNING = (Severity.ERROR, Severity.WARNING)


@dataclass(frozen=True)
class Rule:
    id: str
    severities: tuple[Severity, ...]  # every severity the code reports this id with
    catches: str  # one sentence: what in a deployment makes it fire
    fix: str  # the hint, generalised: what to change


@dataclass(frozen=True)
class Family:
    name: str  # the ids' prefix, before the dot
    title: str
    about: str
    rules: tuple[Rule, ...]


FAMILIES: tuple[Family, ...] = (
    Family(
        "files",
        "Finding the deployment files",
        "Which files a run reads, before any of them is parsed: the paths named on the command "
        "line (or `deployments/`), the `.yaml`/`.yml` files one level inside a folder (those "
        "starting with `_` are not deployments; `_defaults.yaml` is merged under the others), and "
        "the limits on what one run reads (see [Limits](limits.md)). These findings sit on the "
        "file as a whole.",
        (
            Rule(
                "files.missing",
                ERROR,
                "A path or deployment name given on the command line, or `deployments/` (looked "
                "for in the working folder and the folders above it) when none is, does not exist.",
                "Run inside the project that holds `deployments/`, or name files, folders and "
                "deployments that exist (a mistyped name gets the closest one).",
            ),
            Rule(
                "files.unreadable",
                ERROR,
                "A folder named for checking cannot be listed.",
                "Check the folder's permissions.",
            ),
            Rule(
                "files.outside-repo",
                ERROR,
                "A deployment or defaults file is a link, or sits in a folder linked, out of the "
                "repository or into its `.git` folder; it is not read, since findings quote what "
                "they read.",
                "Keep deployment files in the repository as plain files. On a trusted machine, "
                "`DEPLOYER_ALLOW_OUTSIDE_REPO=1` allows links out.",
            ),
            Rule(
                "files.link",
                ERROR,
                "A deployment or defaults file is a symbolic link (even one that stays inside "
                "the repository).",
                "Copy the file instead of linking it.",
            ),
            Rule(
                "files.not-a-mapping",
                ERROR,
                "A deployment file is empty, or its top level is a list or a single value; or a "
                "`_defaults.yaml` is not a mapping.",
                "Write the deployment as a mapping of keys; start from "
                "`deployments/chess-puzzle.yaml`.",
            ),
            Rule(
                "files.too-many",
                ERROR,
                "This run reads more deployment files, bytes, values or characters of text than "
                "one run may (defaults counted for each deployment they are merged into, aliases "
                "expanded); the run stops at the file that went over.",
                "Check fewer files or folders in one run (`deployer validate deployments/team-a`), "
                "or make the files and their defaults smaller.",
            ),
        ),
    ),
    Family(
        "yaml",
        "Reading YAML",
        "One file parsed into values with their line and column. YAML that would be read "
        "differently from how it looks (duplicate keys, tags, keys that are not names) is refused "
        "here, and so are files built to exhaust the reader (see [Limits](limits.md)). A file "
        "with any of these findings is not checked further.",
        (
            Rule(
                "yaml.unreadable",
                ERROR,
                "The file cannot be opened or read.",
                "Check that the file exists and that its permissions let you read it.",
            ),
            Rule(
                "yaml.too-large",
                ERROR,
                "The file is larger than a deployment file may be.",
                "A deployment is a few dozen lines: split it, or check that this is the right "
                "file.",
            ),
            Rule(
                "yaml.encoding",
                ERROR,
                "The file is not valid UTF-8, or holds a NUL character (it looks like a binary "
                "file).",
                "Save the file as UTF-8 text.",
            ),
            Rule(
                "yaml.syntax",
                ERROR,
                "The YAML parser cannot read the file: a tab in the indentation, an unclosed "
                "quote or bracket, a mis-indented key, an unquoted ': ' inside a value, an "
                "undefined alias.",
                "Follow the hint for the parser's message: indent with spaces, quote values "
                "holding ': ' or starting with a character such as ` or @, close quotes and "
                "brackets, define an anchor before its alias.",
            ),
            Rule(
                "yaml.multiple-documents",
                ERROR,
                "The file holds more than one YAML document (a `---` line separates them).",
                "Put one deployment in each file: remove the `---` line or move the rest to a new "
                "file.",
            ),
            Rule(
                "yaml.too-many-nodes",
                ERROR,
                "The file expands to too many values, each use of an alias counted again (an "
                "alias bomb).",
                "Remove nested aliases; deployments never need them.",
            ),
            Rule(
                "yaml.too-deep",
                ERROR,
                "Mappings and lists are nested deeper than a deployment may be.",
                "Deployments are a few levels deep: check the indentation.",
            ),
            Rule(
                "yaml.tag",
                ERROR,
                "A value carries a YAML tag (`!!python/object`, `!!binary`, `!!set`, a custom "
                "`!tag`), or cannot be read as the type YAML gives it (an impossible date such as "
                "2020-13-45).",
                "Remove the tag, or quote the value to make it a plain string.",
            ),
            Rule(
                "yaml.number-too-large",
                ERROR,
                "An integer of 2**63 or more.",
                "No deployment setting takes a number this large: check for a typo.",
            ),
            Rule(
                "yaml.nul",
                ERROR,
                "A string holds a NUL character written as an escape (`\\0`, `\\x00`, "
                "`\\u0000`), which no command line or environment variable can carry.",
                "Remove the escape.",
            ),
            Rule(
                "yaml.key-type",
                ERROR,
                "A key is a list or a mapping, or YAML reads it as a number, boolean, null or "
                "date rather than as a name (`1:`, `yes:`, `~:`).",
                'Quote the key (`"yes":`).',
            ),
            Rule(
                "yaml.duplicate-key",
                ERROR,
                "A mapping sets the same key twice; YAML would silently keep only the last value.",
                "Remove one of the two, or merge their contents.",
            ),
            Rule(
                "yaml.merge",
                ERROR,
                "A merge key (`<<`) points at something other than a mapping.",
                "Point `<<` at an anchored mapping (`<<: *name`).",
            ),
        ),
    ),
    Family(
        "schema",
        "The deployment format (JSON Schema)",
        "A parsed file, with `_defaults.yaml` merged under it, against "
        "[`deployer/deployment.schema.json`](../deployer/deployment.schema.json), the reference "
        "for every key (see [the deployment format](deployment-format.md)). The id is "
        "`schema.` and the JSON Schema keyword that failed, except for the keywords given "
        "clearer names: `unknown-key` (additionalProperties), `missing-key` (required), `one-of` "
        "and `depends` (dependentRequired). The hint comes from the schema's own `x-hint` or "
        "description for the key. A deployment with schema errors gets no further checks.",
        (
            Rule(
                "schema.unknown-key",
                ERROR,
                "A key the format does not have at that place: a typo, or a key under the wrong "
                "parent.",
                "Use the key the hint suggests, or one of the allowed keys it lists.",
            ),
            Rule(
                "schema.missing-key",
                ERROR,
                "A required key is missing: `base_model`, `gpu`, `vllm` or `auth` at the top, "
                "`vllm.version`, an adapter's `name`, the `type` of a `gpu` mapping, "
                "`auth.api_key.secret`, or the `served_name` of a base model given by `path`.",
                "Add the key; the hint says what it holds.",
            ),
            Rule(
                "schema.one-of",
                ERROR,
                "`base_model` or an adapter has both or neither of `repo` and `path`; or `auth` is "
                "neither `none` nor a mapping.",
                "Give exactly one of `repo` (a Hugging Face repo id) or `path` (a local folder); "
                "write `auth: none` or `auth: {api_key: {secret: NAME}}` and/or `proxy: true`.",
            ),
            Rule(
                "schema.type",
                ERROR,
                "A value of the wrong type: a number or boolean where text belongs (`version: "
                "0.10` unquoted is the number 0.1), an empty value, a list where a mapping "
                "belongs, a `vllm.args` value that is not a plain value, list or mapping.",
                "Write the type the message names; quote text that YAML would read as a number or "
                "a boolean.",
            ),
            Rule(
                "schema.pattern",
                ERROR,
                "A string not in its expected form: an app or adapter name, a repo id, a "
                "revision, the vLLM version, a GPU, the image, a Python version, a pip "
                "requirement, an environment variable or flag name, a Secret name, a local path, "
                "a rule id in `accept`.",
                "Write it in the form the hint gives (for a GPU type, the closest one is "
                "suggested).",
            ),
            Rule(
                "schema.const",
                ERROR,
                "`auth` is a word other than `none`.",
                "Write `auth: none` for a public endpoint, or a mapping with `api_key: {secret: "
                "NAME}` and/or `proxy: true`.",
            ),
            Rule(
                "schema.enum",
                ERROR,
                "A key that takes one of a few words has another (`adapter_loading` other "
                "than `static` or `dynamic`).",
                "Use one of the words the message lists.",
            ),
            Rule(
                "schema.minimum",
                ERROR,
                "A number below the smallest allowed: a scaling setting, a `gpu` count, "
                "`smoke.max_tokens`.",
                "Use a value within the range the key's description gives.",
            ),
            Rule(
                "schema.maximum",
                ERROR,
                "A number above the largest allowed: a scaling setting, a `gpu` count (at most "
                "8), `smoke.max_tokens`.",
                "Use a value within the range the key's description gives.",
            ),
            Rule(
                "schema.minLength",
                ERROR,
                "An empty string where text is needed: a local `path`, `smoke.prompt`, a "
                "`smoke.expect` pattern, the reason of an `accept:` entry.",
                "Write the value, or remove the key.",
            ),
            Rule(
                "schema.maxLength",
                ERROR,
                "A string longer than allowed: a local `path`, a `vllm.env_from_secrets` name, "
                "`smoke.prompt`, the reason of an `accept:` entry.",
                "Shorten it.",
            ),
            Rule(
                "schema.maxItems",
                ERROR,
                "A list longer than allowed: `adapters`, `secrets`, `vllm.env_from_secrets`.",
                "Split the adapters across deployments; attach fewer Secrets.",
            ),
            Rule(
                "schema.maxProperties",
                ERROR,
                "A mapping with more entries than allowed: `vllm.args`, `image.env`, "
                "`smoke.expect`, `accept`.",
                "Split them across deployments, or keep to the settings the deployment needs.",
            ),
            Rule(
                "schema.minProperties",
                ERROR,
                "`auth` is an empty mapping.",
                "Set `api_key: {secret: NAME}` and/or `proxy: true`, or write `auth: none`.",
            ),
            Rule(
                "schema.uniqueItems",
                ERROR,
                "The same name appears twice in `secrets` or `vllm.env_from_secrets`.",
                "List each name once.",
            ),
            Rule(
                "schema.depends",
                ERROR,
                "A key that applies only together with another: `revision` without `repo` (in "
                "`base_model` or an adapter), `scaling.target_concurrent_inputs` without "
                "`max_concurrent_inputs`.",
                "Add the key it needs, or remove it.",
            ),
        ),
    ),
    Family(
        "names",
        "Names",
        "App names (the file name, or `name:`) become Modal app names and parts of URLs, so "
        "they must be unique across every file of a run; model ids (the base model's "
        "`served_name`, each adapter's `name`) must be unique within a deployment, or clients "
        "could reach only one of the models.",
        (
            Rule(
                "names.file-name",
                ERROR,
                "The file has no `name:` and its file name cannot be an app name.",
                "Set `name:` in the file, or rename the file: names use 1-40 lowercase letters, "
                "digits and '-', starting and ending with a letter or digit.",
            ),
            Rule(
                "names.duplicate-app",
                ERROR,
                "Two deployments have the same app name; the second deploy would replace the "
                "first app.",
                "Give one of them a different `name:` (it defaults to the file name).",
            ),
            Rule(
                "names.duplicate-adapter",
                ERROR,
                "Two adapters of one deployment have the same name.",
                "Give each adapter its own name.",
            ),
            Rule(
                "names.adapter-shadows-base",
                ERROR,
                "An adapter's name is also the base model's served name.",
                "Rename the adapter, or set `base_model.served_name` to something else.",
            ),
            Rule(
                "names.staged-adapter",
                ERROR,
                "With `adapter_loading: dynamic`, an adapter is named like the files the "
                "adapter folder holds beside the adapters (`deployer-adapters.json`, "
                "`deployer-state.json`, reserved: staging refuses them), or with a name the "
                "resolver never serves.",
                "Rename the adapter: 1-128 letters, digits, '.', '_' and '-', starting with a "
                "letter or digit.",
            ),
        ),
    ),
    Family(
        "sources",
        "Local folders and unreadable sources",
        "A `path:` source is copied into the container by `apply`, which uploads everything the "
        "folder holds, links followed. So it must exist, stay inside the repository, and hold "
        "only plain files of its own (see [the security model](security.md)); a refused folder "
        "is not read at all. `DEPLOYER_ALLOW_OUTSIDE_REPO=1`, set by the operator (never by the "
        "YAML), allows links out on a trusted machine. `sources.unreadable` is also a model or "
        "adapter, local or on the Hub, whose config the source said is not there or not valid.",
        (
            Rule(
                "sources.missing",
                ERROR,
                "A local `path:` does not exist.",
                "Paths are relative to the YAML file that writes them (a `_defaults.yaml` "
                "included): fix the path.",
            ),
            Rule(
                "sources.not-a-folder",
                ERROR,
                "A local `path:` is a file, not a folder.",
                "Point at the folder holding the model's or adapter's files (config.json or "
                "adapter_config.json, weights).",
            ),
            Rule(
                "sources.outside-repo",
                ERROR,
                "A local `path:`, or a link inside its folder, leads out of the repository or "
                "into its `.git` folder (through `..` or a symbolic link).",
                "Keep model and adapter folders inside the repository, and copy linked files in; "
                "on a trusted machine, set `DEPLOYER_ALLOW_OUTSIDE_REPO=1`.",
            ),
            Rule(
                "sources.link-out-of-folder",
                ERROR,
                "A link inside the folder leads elsewhere in the repository (a git-ignored `.env`, "
                "say), which apply would upload.",
                "Copy the file into the folder, or point `path:` at the folder holding it.",
            ),
            Rule(
                "sources.special-file",
                ERROR,
                "The folder holds something that is not a plain file or folder: a pipe, socket, "
                "device or broken link.",
                "Remove it: apply uploads the whole folder.",
            ),
            Rule(
                "sources.git-folder",
                ERROR,
                "The folder is, or holds, a git folder; apply would upload the repository's "
                "history and the credentials in `.git/config`.",
                "Point `path:` at the model or adapter folder itself.",
            ),
            Rule(
                "sources.too-deep",
                ERROR,
                "The folder nests its files deeper than any model or adapter does.",
                "Flatten the folder.",
            ),
            Rule(
                "sources.repeated-content",
                ERROR,
                "Links or hard links name the same files so many times that apply would upload "
                "far more than the folder's content.",
                "Remove the extra links: Modal uploads every name a folder holds.",
            ),
            Rule(
                "sources.too-many-files",
                ERROR,
                "The folder was not checked: this run has already walked as many entries of "
                "local folders as one run may.",
                "Keep local folders to the model's files; nested folders named as separate "
                "sources are each walked whole.",
            ),
            Rule(
                "sources.unreadable",
                ERROR,
                "A file in a local folder cannot be read; or the base model's config.json or an "
                "adapter's adapter_config.json is missing or invalid at the repo, revision or "
                "path given; or a safetensors weights file of the model or an adapter (in a local "
                "folder, or in the local Hugging Face cache) is shorter or longer than its header "
                "says (vLLM could not load it either).",
                "Fix the file's permissions (apply uploads every file); check the repo id, "
                "revision or path; copy or download a cut-short weights file again.",
            ),
        ),
    ),
    Family(
        "flags",
        "vLLM flags (`vllm.args`)",
        "`vllm.args` against the catalog of the pinned vLLM version's real `vllm serve` flags "
        "(`deployer/data/vllm_flags/`), against the flags the deployer sets itself, and for what "
        "a flag makes vLLM import, run, read, open or send. The errors are what would stop vLLM "
        "at startup, after a cold start, or what must never be configured from YAML; the "
        "warnings ask a reviewer to read a flag as code before merging.",
        (
            Rule(
                "flags.unknown",
                ERROR,
                "A `vllm.args` key is no flag of the pinned vLLM version, nor of any other "
                "catalogued one.",
                "Fix the name (the closest flag is suggested), or see `vllm serve --help` for the "
                "pinned version.",
            ),
            Rule(
                "flags.not-in-version",
                ERROR,
                "The flag exists in other catalogued vLLM versions, but not in the pinned one.",
                "Remove it, or pin a version that has it.",
            ),
            Rule(
                "flags.managed",
                ERROR,
                "A flag the deployer sets itself, given in `vllm.args` under its name, its `no-` "
                "form or an alias: the model, its revision and served name, LoRA, tensor "
                "parallelism, sleep mode, where vLLM listens, the download folder, a `config` "
                "file of flags.",
                "Remove it; where a YAML field controls the flag, the hint names it.",
            ),
            Rule(
                "flags.abbreviated",
                ERROR,
                "A prefix that vLLM's parser would expand to a flag the deployer owns, a "
                "credential flag, or a flag checked for what it reads, runs or exposes "
                "(`api-ke` for `api-key`).",
                "Write flags in full.",
            ),
            Rule(
                "flags.value-looks-like-flag",
                ERROR,
                "A value starts with '-' (other than a negative number without a decimal "
                "point), written as text or as a YAML number (`-1.5`), so vLLM would read it as "
                "another flag.",
                "Values cannot start with '-'; if it was meant as a flag, give it its own key in "
                "`vllm.args`.",
            ),
            Rule(
                "flags.changed-by-yaml",
                ERROR,
                "An unquoted value that YAML 1.1 reads as something other than what was written, "
                "and vLLM would be given that instead: an octal `0123` (83), a base-60 `1:30` "
                "(90), a hexadecimal `0x1F`, `.inf`, a `yes`/`no`/`on`/`off` boolean where the "
                "flag is not boolean, or a number such as `1.10` or `1_000` where the flag takes "
                "text. Numbers that are the number they say (`0.90` for a float flag) are as "
                "written.",
                "Quote the value to pass it as written, or write the value you mean.",
            ),
            Rule(
                "flags.negated-name",
                ERROR,
                "A boolean flag written by its negative name (`no-enable-prefix-caching: true`).",
                "Write the flag by its own name with true or false (`enable-prefix-caching: "
                "false`).",
            ),
            Rule(
                "flags.value",
                ERROR,
                "A value the flag does not take in the pinned version: the wrong type, outside "
                "the bounds vLLM's config classes put on it, not among its choices, a list for a "
                "single value, JSON the deployer cannot read, false for a flag without a negative "
                "form, or more values in a JSON flag than the deployer judges.",
                "Give a value of the type and range the message names; the hint suggests the "
                "nearest allowed value.",
            ),
            Rule(
                "flags.reads-system-file",
                ERROR,
                "A flag that reads a file (a chat template, a tokenizer, a config, TLS files), or "
                "a path inside a JSON flag, names a system file in the container (`/proc`, "
                "`/sys`, `/etc`, `/dev`, `/run`, root's dot-folders), where the container's "
                "Secrets can be read.",
                "Point the flag at a file of the model, under the folder you deploy, or at a Hub "
                "repo.",
            ),
            Rule(
                "flags.no-catalog",
                WARNING,
                "There is no flag catalog for the pinned vLLM version: `vllm.args` are not "
                "checked, and LoRA limits assume the rank choices of the catalogued versions.",
                "Pin a catalogued version, or add a catalog with `scripts/extract_vllm_flags.py "
                "--install VERSION`.",
            ),
            Rule(
                "flags.unreviewed",
                WARNING,
                "A flag not among those reviewed for what they make vLLM read, import, open or "
                "send.",
                "Read what it does in vLLM's source before merging, as you would code; if it only "
                "tunes the engine, add it to `deployer/data/vllm_flags_reviewed.json`.",
            ),
            Rule(
                "flags.runs-code",
                WARNING,
                "A flag that makes vLLM import or run code the deployment names "
                "(`trust-remote-code`, `middleware`, plugins, worker or scheduler classes, "
                "logging configs), or an import path inside a JSON flag.",
                "Review it as code: it runs in the container with the deployment's Secrets; "
                "remove it unless the model needs it.",
            ),
            Rule(
                "flags.exposes",
                WARNING,
                "A flag that opens routes to every caller, writes prompts or replies into the "
                "logs, or sends requests or their data to an address (also an address inside a "
                "JSON flag).",
                "Review it: remove it unless callers need it.",
            ),
            Rule(
                "flags.reads-file",
                WARNING,
                "A flag that reads a file in the container (a chat template, a tokenizer), or a "
                "path inside a JSON flag.",
                "Review it: vLLM may show what it reads to callers (a chat template comes back "
                "from `/tokenize`).",
            ),
            Rule(
                "flags.importable-sources",
                WARNING,
                "`image.python` is older than 3.11, which has no `python -P`: vLLM's working "
                "folder, where local folders are copied, stays importable, so a flag naming a "
                "class could import a committed file.",
                "Use Python 3.11 or later.",
            ),
        ),
    ),
    Family(
        "engine",
        "The pinned vLLM's own checks (`validate` with DEPLOYER_VLLM_PYTHON)",
        "Where `DEPLOYER_VLLM_PYTHON` names a Python with the deployment's pinned vLLM (its CPU "
        "build is enough), `validate` hands each deployment's exact command line to that vLLM's "
        "argument parser, its serve-argument validation and its engine configuration, in one "
        "child process, offline, without credentials and within a deadline. Flags that import "
        "code, read files or connect somewhere are left out, and a deployment with errors from "
        "the other checks is not handed over. A Hub model is given to vLLM as a folder holding "
        "the config.json the deployer read.",
        (
            Rule(
                "engine.refused",
                ERROR,
                "The pinned vLLM refuses the command line at start-up: a combination of flags "
                "(`enable-auto-tool-choice` without `tool-call-parser`), a value its config "
                "classes reject (an unknown key in `compilation-config`, text that is not JSON), "
                "or a value that does not suit the model (`max-num-batched-tokens` below "
                "`max-model-len` with chunked prefill off). The finding sits at the flag vLLM's "
                "message names, and quotes it.",
                "Change the flag as the message says; the hint says what vLLM wants when its "
                "message names it.",
            ),
            Rule(
                "engine.not-run",
                NOTE,
                "The engine check did not run, or not all of it: `DEPLOYER_VLLM_PYTHON` is not "
                "set or has another vLLM version than the deployment pins, the deployment has "
                "errors, flags were left out, the child process failed or ran past its deadline, "
                "or vLLM refused something only because the check runs on the CPU or offline.",
                "Set `DEPLOYER_VLLM_PYTHON` to a Python with the pinned vLLM; what the note says "
                "was left out is judged when the app starts.",
            ),
        ),
    ),
    Family(
        "secrets",
        "Credentials",
        "Secrets are referenced by name only (`secrets:`, `auth.api_key.secret`): a value written "
        "in the YAML ends up in the rendered app in plain text. vLLM's own process gets no "
        "variable whose name looks like a credential, since a crafted model config could make "
        "it serve `/proc/self/environ`; `vllm.env_from_secrets` undoes that name by name, so "
        "each entry is for review.",
        (
            Rule(
                "secrets.in-args",
                ERROR,
                "`hf-token` or `api-key` in `vllm.args` would write a credential into the "
                "rendered app and its log.",
                "Remove it; put `HF_TOKEN` or `VLLM_API_KEY` in a Modal Secret listed under "
                "`secrets:` (for the API key, use `auth.api_key`).",
            ),
            Rule(
                "secrets.in-env",
                ERROR,
                "An `image.env` name looks like a credential (`*TOKEN*`, `*SECRET*`, `*_KEY`, "
                "...); image settings are written into the rendered app in plain text.",
                "Move it into a Modal Secret (`modal secret create NAME KEY=value`) and list the "
                "Secret under `secrets:`.",
            ),
            Rule(
                "secrets.api-key-to-vllm",
                ERROR,
                "`VLLM_API_KEY` in `vllm.env_from_secrets` would hand the API key to vLLM's "
                "process.",
                "Remove it: the app's middleware checks the key on every route from a digest.",
            ),
            Rule(
                "secrets.modal-to-vllm",
                ERROR,
                "A `MODAL_*` name in `vllm.env_from_secrets` would hand one of Modal's own "
                "variables, which open the workspace, to vLLM's process.",
                "Remove it; vLLM reads none of them.",
            ),
            Rule(
                "secrets.to-vllm",
                WARNING,
                "A `vllm.env_from_secrets` entry: a credential handed to vLLM's process, where a "
                "file vLLM is tricked into reading would expose it; or a name that is no "
                "credential, which vLLM gets anyway.",
                "Keep only what vLLM itself must read (AWS keys for an S3 load format, `HF_TOKEN` "
                "for a private repo a flag names); remove names that are not credentials.",
            ),
        ),
    ),
    Family(
        "image",
        "The container image",
        "`image.base`, `image.pip` and `image.env` decide what runs in the container, beside the "
        "deployment's Secrets: a base image or a package is code, and an environment variable "
        "can load code, move caches, open routes or send data out. `image.python` must be a "
        "version the pinned vLLM installs on. Errors are what would break the image build or the "
        "app, or expose it; warnings ask for a review as code.",
        (
            Rule(
                "image.python-unsupported",
                ERROR,
                "`image.python` is outside the pinned vLLM release's `Requires-Python` (vLLM "
                "0.11.2: >=3.10, <3.14), so installing vLLM would fail while Modal builds the "
                "image.",
                "Use the version the hint names, the nearest the release supports, or pin "
                "another vLLM version.",
            ),
            Rule(
                "image.python-unchecked",
                NOTE,
                "`image.python` could not be checked against the pinned vLLM release's "
                "`Requires-Python`: the version has no flag catalog, or its catalog does not "
                "record it.",
                "Extract the catalog with `scripts/extract_vllm_flags.py --install VERSION`, "
                "which records it.",
            ),
            Rule(
                "image.env-control",
                ERROR,
                "An `image.env` value holds a line break or control character; Modal writes each "
                "variable on a Dockerfile `ENV` line, where a line break starts another "
                "instruction.",
                "Keep `image.env` values on one line.",
            ),
            Rule(
                "image.env-cache",
                ERROR,
                "`image.env` sets `HF_HOME`, `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`, "
                "`TRANSFORMERS_CACHE`, `HOME` or `XDG_CACHE_HOME`, moving the Hugging Face cache "
                "off the cache volume: every cold start would download the weights again.",
                "Remove it; the app mounts the `huggingface-cache` volume at huggingface_hub's "
                "default cache.",
            ),
            Rule(
                "image.env-dev-routes",
                ERROR,
                "`image.env` sets `VLLM_SERVER_DEV_MODE` without proxy auth: its routes "
                "(`/server_info`, `/collective_rpc`, `/sleep`, weight updates) would be open to "
                "anyone with the URL or the API key.",
                "Use `auth: {proxy: true}`, or remove the variable.",
            ),
            Rule(
                "image.env-exposes",
                WARNING,
                "`VLLM_LOGGING_LEVEL` below INFO: vLLM writes prompts and replies into the logs.",
                "Use INFO, or remove it.",
            ),
            Rule(
                "image.env-runs-code",
                WARNING,
                "An `image.env` variable that loads code into processes in the container "
                "(`PYTHON*`, `LD_*`, `PATH`, `*_PATH`, plugin settings).",
                "Review it as code; remove it unless the image needs it.",
            ),
            Rule(
                "image.env-network",
                WARNING,
                "An `image.env` variable that sends the container's downloads or data elsewhere "
                "(`*_URL`, `*_ENDPOINT`, proxies, CA bundles).",
                "Review it; remove it unless the image needs it.",
            ),
            Rule(
                "image.env-unreviewed",
                WARNING,
                "An `image.env` variable not known only to tune the container.",
                "Review what it does as you would code.",
            ),
            Rule(
                "image.base-unreviewed",
                WARNING,
                "`image.base` is not one of NVIDIA's CUDA images: whatever it holds runs in the "
                "container.",
                "Review the image as code and pin it by `@sha256` digest, or use "
                "`nvidia/cuda:<version>-devel-ubuntu22.04`.",
            ),
            Rule(
                "image.pip-code",
                WARNING,
                "`image.pip` installs a package beyond the known few (or with extras); a package "
                "can hook into vLLM's start-up.",
                "Review the package as code and pin it (`==`) to the version you read.",
            ),
        ),
    ),
    Family(
        "auth",
        "Auth",
        "An endpoint is never public by accident: `auth` is required, and a public endpoint must "
        "be asked for with `auth: none`.",
        (
            Rule(
                "auth.nothing-enabled",
                ERROR,
                "`auth` is a mapping that turns on neither an API key nor proxy auth (`proxy: "
                "false`), which would leave the endpoint public.",
                "Set `api_key: {secret: NAME}` or `proxy: true`, or write `auth: none` if a "
                "public endpoint is intended.",
            ),
            Rule(
                "auth.public",
                WARNING,
                "`auth: none`: anyone with the URL can send requests and run up GPU cost.",
                "Protect it with `auth: {api_key: {secret: NAME}}` (OpenAI clients pass "
                "`api_key=`) or `auth: {proxy: true}`.",
            ),
        ),
    ),
    Family(
        "cold-start",
        "Cold starts",
        "Settings of `cold_start` (see [cold starts](cold-starts.md)) that would open the "
        "server more than the deployment's auth says.",
        (
            Rule(
                "cold-start.open-dev-routes",
                ERROR,
                "`cold_start.gpu_snapshot` without proxy auth: snapshots turn on vLLM's dev-mode "
                "routes (`/sleep`, `/wake_up`, `/collective_rpc`, weight updates), which no API "
                "client should reach.",
                "Use `auth: {proxy: true}` (Modal checks every route), or turn `gpu_snapshot` off.",
            ),
        ),
    ),
    Family(
        "smoke",
        "Smoke checks",
        "The `smoke` section says what `deployer smoke` expects of each model after a deploy: it "
        "must name models the deployment serves, with patterns that compile.",
        (
            Rule(
                "smoke.unknown-model",
                ERROR,
                "`smoke.expect` names a model id the deployment does not serve.",
                "Use the base model's served name or an adapter's name (the closest is suggested).",
            ),
            Rule(
                "smoke.bad-pattern",
                ERROR,
                "A `smoke.expect` pattern is not a valid regular expression, or takes too long "
                "to compile.",
                "Escape special characters such as `( ) [ ] . * + ?` with a backslash.",
            ),
        ),
    ),
    Family(
        "lora",
        "LoRA limits",
        "Every adapter must fit the `--max-lora-rank`, `--max-loras` and `--max-cpu-loras` "
        "vLLM starts with, which the deployer derives from the adapters unless `vllm.args` sets "
        "them; otherwise vLLM refuses to load the adapter, after a full cold start.",
        (
            Rule(
                "lora.unknown-rank",
                WARNING,
                "An adapter's rank is unknown here (its adapter_config.json is neither cached "
                "nor reachable), so it may not fit vLLM's default `--max-lora-rank`.",
                "Download the adapter once (`hf download REPO --revision REV`) so its config is "
                "cached, or set `vllm.args.max-lora-rank`.",
            ),
            Rule(
                "lora.rank-too-large",
                ERROR,
                "An adapter's rank is above the largest LoRA rank the pinned vLLM serves.",
                "Retrain with a smaller rank, or merge the adapter into the base model.",
            ),
            Rule(
                "lora.rank-too-small",
                ERROR,
                "`max-lora-rank` in `vllm.args` is below an adapter's rank.",
                "Remove `max-lora-rank` to have it derived from the adapters.",
            ),
            Rule(
                "lora.rank-choice",
                ERROR,
                "`max-lora-rank` is not among the values vLLM accepts (checked here when the "
                "pinned version has no flag catalog; otherwise it is `flags.value`).",
                "Use the smallest allowed value above it.",
            ),
            Rule(
                "lora.cpu-loras",
                ERROR,
                "`max-cpu-loras` is below `max-loras`; vLLM refuses to start.",
                "Raise it to at least `max-loras`, or remove it (it defaults to `max-loras`).",
            ),
        ),
    ),
    Family(
        "compat",
        "Adapter compatibility",
        "Each adapter's adapter_config.json against what vLLM serves and against the base "
        "model's config and weight names: vLLM either refuses such an adapter at startup, after "
        "a cold start, or worse, loads it and serves base-model or garbage output.",
        (
            Rule(
                "compat.missing-field",
                ERROR,
                "The adapter's adapter_config.json lacks `r`, `lora_alpha` or `target_modules`, "
                "which vLLM requires.",
                "Re-save the adapter with PEFT (`model.save_pretrained`).",
            ),
            Rule(
                "compat.dora",
                ERROR,
                "A DoRA adapter (`use_dora: true`); vLLM does not serve DoRA.",
                "Train a plain LoRA adapter, or merge this one into the base model.",
            ),
            Rule(
                "compat.bias",
                ERROR,
                "The adapter trains biases (`bias` other than 'none', or `lora_bias`).",
                "Retrain with `bias='none'`, or merge the adapter into the base model.",
            ),
            Rule(
                "compat.modules-to-save",
                ERROR,
                "The adapter saves full modules (`modules_to_save`) that the pinned vLLM does "
                "not accept.",
                "Merge the adapter into the base model, or retrain without `modules_to_save`.",
            ),
            Rule(
                "compat.no-weights",
                ERROR,
                "A local adapter folder has no adapter_model.safetensors or adapter_model.bin.",
                "Copy the adapter's weights file next to its adapter_config.json.",
            ),
            Rule(
                "compat.base-mismatch",
                ERROR,
                "The adapter was trained on another base model (`base_model_name_or_path`).",
                "Serve it on the base it was trained on, or retrain it on this one.",
            ),
            Rule(
                "compat.unknown-target",
                ERROR,
                "`target_modules` names modules the base model does not have.",
                "Check that the adapter belongs to this architecture; the hint lists its modules.",
            ),
            Rule(
                "compat.slow-pattern",
                WARNING,
                "A `target_modules`, `rank_pattern` or `alpha_pattern` regular expression "
                "backtracks too much to be matched against the base model's module names; it is "
                "not checked, and it would make loading slow or stall vLLM.",
                "List the module names instead of a pattern.",
            ),
        ),
    ),
    Family(
        "model",
        "What the model's own files make vLLM load",
        "The base model's config.json and tokenizer files, which a pull request can commit (or a "
        "Hub repo it names can hold), and flags that change which files vLLM reads: anything "
        "that would make vLLM serve or read something other than the files the deployer "
        "checked, or read a system file into a place callers can see.",
        (
            Rule(
                "model.config-swaps-model",
                ERROR,
                "The base model's config.json has `speculators_config` (vLLM would serve the "
                "verifier model it names instead) or `configuration_files` (transformers would "
                "read another, unchecked config file).",
                "Make the verifier the base model and name the speculator as the draft in "
                "`speculative-config`, or remove the key and keep the configuration in "
                "config.json.",
            ),
            Rule(
                "model.config-reads-system-file",
                ERROR,
                "The base model's config.json names a system file in the container, or a path "
                "climbing out of the model folder.",
                "Remove the key; a model's files belong in its folder, found by their standard "
                "names.",
            ),
            Rule(
                "model.config-loads-model",
                WARNING,
                "The base model's config.json or `hf-overrides` names another model to load (a "
                "`*_model_id` key), or `speculative-config` names a Hub draft model: vLLM loads "
                "its config and weights, unchecked.",
                "Review that model as part of the deployment, and pin a draft model's "
                '`"revision"` to a commit.',
            ),
            Rule(
                "model.mistral-format",
                ERROR_OR_WARNING,
                "An error when a local base model folder holds Mistral-format weights "
                "(`consolidated*.safetensors`), which vLLM would load in place of the checked "
                "files; a warning when `load-format: mistral` asks for them.",
                "Remove the Mistral-format files, or set `load-format: mistral` and review "
                "params.json, tekken.json and those weights as unchecked.",
            ),
            Rule(
                "model.unchecked-format",
                WARNING,
                "`tokenizer-mode` or `config-format` other than Hugging Face's makes vLLM read "
                "files the deployer does not check (tekken.json, params.json).",
                "Review those files as unchecked, or leave the flag out.",
            ),
            Rule(
                "model.tokenizer-unreadable",
                ERROR,
                "A tokenizer file (tokenizer_config.json, special_tokens_map.json, ...) cannot be "
                "read as a small JSON object, so what it names cannot be judged.",
                "Make the file a JSON object of at most a few kilobytes, as transformers writes "
                "it.",
            ),
            Rule(
                "model.tokenizer-reads-system-file",
                ERROR,
                "A tokenizer file names a system file in the container, or a path climbing out of "
                "the model folder, which the tokenizer would read into its vocabulary.",
                "Remove the key; the tokenizer's files belong in the model folder, found by "
                "their standard names.",
            ),
            Rule(
                "model.tokenizer-reads-file",
                WARNING,
                "A tokenizer file names a file for the tokenizer to open as written, in place of "
                "the model folder's own.",
                "Review it (callers can read a vocabulary back through `/detokenize`); remove the "
                "key unless the model needs it.",
            ),
        ),
    ),
    Family(
        "fit",
        "GPU memory fit",
        "Whether the weights, LoRA buffers and the KV cache for `max-model-len` tokens fit the "
        "GPU at vLLM's `gpu-memory-utilization` (see [GPU fit and cost](fit-and-cost.md); "
        "`deployer fit NAME` shows the breakdown). vLLM answers only after a cold start, by "
        "refusing to start.",
        (
            Rule(
                "fit.kv-cache",
                ERROR,
                "The model with its context does not fit on the GPU.",
                "Lower `vllm.args.max-model-len` to what fits, or use a GPU that holds the "
                "context; the hint names both, with prices.",
            ),
            Rule(
                "fit.beyond-model",
                ERROR,
                "`max-model-len` is above the model's `max_position_embeddings`; vLLM refuses it.",
                "Use at most the model's `max_position_embeddings`.",
            ),
            Rule(
                "fit.skipped",
                NOTE,
                "The fit could not be computed here: the base model's config is not in the local "
                "cache and the Hub is out of reach, or it lacks the usual transformer fields.",
                "Download the config once (`hf download REPO config.json`) or run where the Hub "
                "is reachable; a local model's config.json needs the usual fields.",
            ),
        ),
    ),
    Family(
        "gpu",
        "GPUs",
        "GPU counts and types that Modal or vLLM would refuse, or that change how the model is "
        "served.",
        (
            Rule(
                "gpu.count",
                ERROR,
                "More GPUs of a type than Modal attaches to one container.",
                "Use fewer, or a GPU type that allows up to 8.",
            ),
            Rule(
                "gpu.tensor-parallel",
                ERROR,
                "The GPU count does not divide the model's attention heads; vLLM's tensor "
                "parallelism refuses to start.",
                "Use a GPU count that divides the number of heads (the hint lists them).",
            ),
            Rule(
                "gpu.dtype",
                ERROR,
                "`dtype: bfloat16` on a GPU without bfloat16; vLLM refuses to start.",
                "Use `dtype: float16` (or auto), or a GPU with bfloat16.",
            ),
            Rule(
                "gpu.dtype-fallback",
                WARNING,
                "A bfloat16 model on a GPU without bfloat16: vLLM serves it in float16, which "
                "can overflow and gives different outputs.",
                "Set `vllm.args.dtype: float16` to say so, or use a GPU with bfloat16.",
            ),
        ),
    ),
    Family(
        "lock",
        "The lock",
        "`lock/` beside `deployments/` pins each deployment's Hub sources to commits and its "
        "image to a package set (see [The lock](lock.md)). These findings appear when the project "
        "keeps a lock; `--locked` (validate, render, plan, apply) makes each an error, and a "
        "deployment without a lock one too.",
        (
            Rule(
                "lock.missing",
                ERROR_OR_WARNING,
                "The lock has no commit for a Hub source or no package set for the image, or "
                "locks them for another repo, revision, vLLM version, Python version or pip "
                "list than the YAML now says; render leaves what it lacks floating.",
                "Run `deployer lock` and commit `lock/`.",
            ),
            Rule(
                "lock.unresolved",
                ERROR_OR_WARNING,
                "The lock records a Hub source as unresolved (`deployer lock --allow-unresolved` "
                "could not reach the Hub): it downloads whatever its revision points to.",
                "Run `deployer lock` where the Hub is reachable (with `HF_TOKEN` for private "
                "repos) and commit `lock/`.",
            ),
            Rule(
                "lock.unreadable",
                ERROR,
                "`lock/sources.yaml` is not a lock: not YAML, a link, too large, or a value "
                "of the wrong kind.",
                "Fix the file, or remove it and run `deployer lock` to write it again.",
            ),
        ),
    ),
    Family(
        "scaling",
        "Scaling",
        "Scaling numbers that each pass the schema but contradict each other.",
        (
            Rule(
                "scaling.bounds",
                ERROR,
                "`min_containers` above `max_containers` (4 unless written), or "
                "`target_concurrent_inputs` above `max_concurrent_inputs`.",
                "Lower the first or raise the second (`max_containers: null` for no bound).",
            ),
        ),
    ),
    Family(
        "accept",
        "Accepted warnings",
        "`accept:` maps the rule id of a warning to the reason the team accepts it (`accept: "
        "{auth.public: internal evaluation only}`). An accepted warning is still reported, "
        "marked accepted with its reason (in JSON, its `accepted` field), and does not fail "
        "`--strict`. Only warnings can be accepted; these findings are about the entries "
        "themselves, and cannot be accepted.",
        (
            Rule(
                "accept.unknown-rule",
                ERROR,
                "An `accept:` entry names a rule id that does not exist.",
                "Use the id the warning carries (the closest is suggested); every id is listed on "
                "this page.",
            ),
            Rule(
                "accept.not-a-warning",
                ERROR,
                "An `accept:` entry names a rule that reports errors or notes: an error means the "
                "deployment would fail or must not be deployed as written, and a note never "
                "fails a run.",
                "Remove the entry and fix what the rule reports.",
            ),
            Rule(
                "accept.unused",
                WARNING,
                "An `accept:` entry accepts a warning that this deployment no longer has, so the "
                "file would go on excusing something that is gone.",
                "Remove the entry.",
            ),
        ),
    ),
)

RULES: dict[str, Rule] = {rule.id: rule for family in FAMILIES for rule in family.rules}
