"""Every bound the deployer puts on what it reads, keeps, waits for and prints.

Deployment files, model and adapter folders, Hub repos and git commits come from whoever can open
a pull request. Each bound is far above what a real project needs and far below what would
exhaust a CI runner's memory, disk or time; its comment says what it bounds and why that value.
A module imports the names it uses (`from deployer.core.limits import MAX_NODES`), so a test
lowers a bound by patching that module's name.
"""

# -- numbers --------------------------------------------------------------------------------------

MAX_COUNT = 2**53  # the largest whole number a float holds exactly
# Integers in YAML: no setting takes 2**63 or more, and larger ones break printing and float
# arithmetic.
MAX_INTEGER = 2**63
INT_MAX_STR_DIGITS = 4300  # Python's default limit for int() of a string (3.11+): vLLM's too

# -- one deployment file (spec/load.py) -----------------------------------------------------------

MAX_YAML_BYTES = 1024 * 1024  # a deployment or defaults file; a deployment is a few dozen lines
MAX_NODES = 100_000  # values built, counting each alias expansion again ("billion laughs" guard)
MAX_YAML_DEPTH = 64  # nesting levels; deployments are a few deep, and building recurses per level

# -- all deployment files of one run (checks/pipeline.py) -----------------------------------------
# Each file has caps of its own, but a pull request can commit one 1 MB file under many names
# (git stores it once), or a large defaults file that is merged into every deployment beside it,
# and each copy is loaded, merged and checked again: seconds and tens of megabytes per copy.

MAX_RUN_FILES = 5_000
MAX_RUN_BYTES = 32 * 1024 * 1024
MAX_RUN_VALUES = 400_000  # values loaded, and merged in from defaults, over all files
# Characters of text in the merged deployments, aliases expanded: what the apps are rendered
# from. A 10 KB file can hold 110 aliases of one 8.8 KB string, a megabyte in the app it renders.
MAX_RUN_CHARS = 32 * 1024 * 1024

# -- JSON read from model and adapter folders and the Hub ----------------------------------------

MAX_JSON_BYTES = 4 * 1024 * 1024  # a model's or adapter's config is a few kilobytes
MAX_HUB_FILE_BYTES = 10 * 1024 * 1024  # one file fetched from the Hub; configs are kilobytes
# About how much memory the JSON one command parses may become (configs, safetensors headers),
# all together and each file once: a 4 MB config of `[{}, {}, ...]` becomes about 110 MB of
# objects, git stores it once under any number of adapter folders, and a plan reads several
# commits.
MAX_RUN_PARSED = 256 * 1024 * 1024
MAX_JSON_NODES = 100_000  # (key, value) pairs judged in one JSON-valued vLLM flag; more is an error

# -- safetensors headers and indexes (sources/base_model.py) --------------------------------------
# A real shard's header is tens of kilobytes (a tensor's name, dtype, shape and offsets, for a
# few hundred tensors): past these, parsing them would cost seconds and gigabytes for nothing.

MAX_HEADER_BYTES = 16 * 1024 * 1024  # one shard's header
MAX_HEADERS_BYTES = 64 * 1024 * 1024  # all shards of one model together
MAX_INDEX_BYTES = 64 * 1024 * 1024  # the largest models' indexes are about 10 MB
MAX_TENSOR_NAME_CHARS = 1024  # real tensor names are about 100 characters
MAX_TENSOR_NAME_PARTS = 32  # and about 8 dotted parts
MAX_DIMS = 8  # weights have 1 to 5; a shape of thousands of dimensions is an attack on math.prod
MAX_SHARDS = 10_000  # the largest models have a few hundred; each is a path to resolve
MAX_TENSORS = 500_000  # per model: the largest mixtures of experts have about 100,000
# Read in one run, by every base model together. Each tensor kept costs about 300 bytes, and a
# 16 MB header can list 2.6 million tiny ones.
MAX_RUN_TENSORS = 1_000_000

# -- local model and adapter folders (core/paths.py, sources/folders.py) -------------------------

MAX_FOLDER_DEPTH = 100  # folders below a model or adapter folder; real ones hold a handful
# Entries walked in one run, all source folders together: 99 adapters, each naming one level of
# a 99-deep chain of folders above 4,000 files, walk 400,000 entries.
MAX_RUN_ENTRIES = 1_000_000
# Bytes uploaded beyond the content through more names of the same files (links, hard links): a
# 100 MB file behind 1,000 links is 100 GB to upload.
REPEATED_BYTES = 1 << 30

# -- regular expressions from untrusted text (core/patterns.py) -----------------------------------
# Python's re cannot be interrupted, and `(a+)+b` backtracks for minutes on a 40-character name:
# each pattern runs in a child process with these.

MATCH_SECONDS = 2.0  # one pattern, compiled and matched
CHECK_SECONDS = 10.0  # all patterns of one validate (or one plan's commits) together
MATCH_MEMORY = 1 << 30  # bytes of address space: backtracking state grows while the deadline runs

# -- the network: the Hub (sources/hub.py) and Modal's CLI (deploy/platform/modal_cli.py) --------

# One request for a config, in all (connecting, redirects, reading): a Hub that drips a byte every
# few seconds is cut off here, not once per read.
HUB_REQUEST_SECONDS = 8.0
# All Hub requests of one run together: 5,000 adapters of distinct repos, each answered 404 after
# 50 ms by a slow or rate-limiting Hub, hold validate for minutes. Past it, configs not in the
# cache are "not checked", as when the Hub is unreachable.
HUB_RUN_SECONDS = 60.0
LIST_TIMEOUT = 120.0  # one `modal app list`, `history`, `rollback` or `stop`
DEPLOY_TIMEOUT = 3600.0  # an image build with CUDA and vLLM can take many minutes
URL_TIMEOUT = 20.0  # reading an app's web URL: the SDK retries an unreachable server for a minute
LOGS_TIMEOUT = 30.0  # `modal app logs --tail`, read before a failed version is rolled back
# `modal volume get` or `put` of one small file (deployer-state.json, deployer-adapters.json)
VOLUME_FILE_TIMEOUT = 60.0
# deployer-state.json is a line per adapter; anyone with the workspace's token can write the volume.
MAX_STATE_FILE_BYTES = 1024 * 1024

# -- hot-adding adapters (deploy/hot_add.py) ------------------------------------------------------
# A running container sees a newly staged adapter after its next volume reload, one every
# ADAPTER_RELOAD_SECONDS (rendered into the app); a reload fails while files are open and waits
# for the next round. The smoke check retries each new adapter for three rounds and a margin,
# then counts the hot-add as failed and takes the adapters out again.
ADAPTER_RELOAD_SECONDS = 10
HOT_ADD_SMOKE_SECONDS = 3 * ADAPTER_RELOAD_SECONDS + 5.0
HOT_ADD_RETRY_SECONDS = 2.0  # between two tries of a new adapter: a fifth of a round

# -- the engine check (vllm/engine.py): the pinned vLLM judging each command line -------------------
# One process for the whole run: importing vLLM takes 10-20 s on two shared cores (a minute on a
# cold, slow runner), then each deployment a fraction of a second per try. Past the deadline the
# process group is killed and the deployments without a result get a note.

ENGINE_SECONDS = 300.0
ENGINE_VERSION_SECONDS = 30.0  # asking the interpreter which vLLM it has (no vLLM import)
# Tries per deployment: after each refusal that names a flag, that flag is left out and the rest
# tried again, so one run reports what vLLM would refuse one start at a time.
ENGINE_ROUNDS = 4
ENGINE_MESSAGE_CHARS = 4000  # of one vLLM message kept by the driver; diagnostics cut to MAX_TEXT
# What is read of the driver's results: a few hundred bytes per deployment, MAX_RUN_FILES of them.
MAX_ENGINE_OUTPUT_BYTES = 16 * 1024 * 1024
ENGINE_LOG_TAIL_BYTES = 4096  # of vLLM's log, read for the last line when the driver fails

# -- the lock (sources/lock.py, sources/packages.py) ---------------------------------------------

# lock/sources.yaml: a few lines per Hub source; read as a YAML file like a deployment's
# (MAX_YAML_BYTES). One locked package set: vLLM's 170 packages with their hashes are ~400 KB.
MAX_LOCK_IMAGE_BYTES = 8 * 1024 * 1024
# One `uv pip compile`: vLLM's set resolves in ~10 s from a warm registry, a cold cache takes longer.
PACKAGE_RESOLVE_SECONDS = 300

# -- git commits a plan reads (deploy/commit_files.py, deploy/state.py) --------------------------

GIT_SECONDS = 600  # one git process of an export (listing the commit, streaming its files)
# All the listings of git-ignored files of a plan's refs together: git's wildcard matching slows
# down steeply with the `*`s of a committed .gitignore pattern.
IGNORED_SECONDS = 30
# A plan reads back the commit Modal recorded for each deployment it updates, checking the whole
# commit each time (about a second and 5 MB each). Past these, the rest compare by hash only,
# with a note saying why.
MAX_HISTORY_COMMITS = 20
HISTORY_SECONDS = 60.0
MAX_LINK_BYTES = 4096  # PATH_MAX: no longer link can be followed
MAX_LINKS = 10_000  # a project holds a few; each costs a resolution
MAX_HOPS = 40  # links followed in one path: the kernel's own limit (ELOOP)
MAX_STEPS = 1_000  # path components walked resolving one path, links expanded
MAX_LINK_ROUNDS = 3  # passes judging the placed links by each other, dropping those leading out
# Characters of a path inside the commit: with the temporary folder, still within PATH_MAX.
MAX_COMMIT_PATH_CHARS = 3_000
# Parts of a path inside the commit: a source folder's own depth, then the MAX_FOLDER_DEPTH levels
# validation allows below it (deeper names are never written: rmtree recurses per level too).
MAX_COMMIT_PATH_PARTS = 2 * MAX_FOLDER_DEPTH
MAX_ENTRIES = 2_000_000  # names listed from one commit (a 240 KB repository can list 5 million)
MAX_RECORD_BYTES = 65_536  # one listed name with its mode, id and size
MAX_LISTED_BYTES = 256 << 20  # all names listed from one commit: 2,000,000 names of 130 bytes
# What one export may create: a project's deployments, templates and model folders hold far fewer.
# A commit of a few kilobytes can list a million files sharing one subtree, each in its own
# 95-deep folder chain: minutes of mkdir and gigabytes of folders that no size counts.
MAX_EXPORT_FILES = 100_000
MAX_EXPORT_FOLDERS = 100_000
FOLDER_BYTES = 4096  # a folder's own block, counted against the disk's free room
KEEP_FREE = 256 << 20  # bytes an export leaves free on its disk, for the rest of the run and others
MAX_ARGS_CHARS = 100_000  # pathspecs per git process, well inside the kernel's argument limit

# -- what is printed -----------------------------------------------------------------------------
# Messages and plans quote values from files anyone can commit: a 3 MB modules_to_save, quoted in
# the message of each of 300 adapters naming it, would be a gigabyte of output.

MAX_TEXT = 1000  # characters of a message or a hint
EXCERPT = 160  # characters of a source line shown around the column
SHOWN_MODULES = 40  # module names a hint lists: a crafted header can name a million
SHOWN_CHARS = 200  # of one value in a plan: a flag's value can be 200,000 characters
NOTE_CHARS = 1000  # of one note under a plan's action
SHOWN_CHANGES = 30  # changed settings listed per deployment; a plan can update thousands
# A failed deploy quotes the end of its app's logs: enough for vLLM's error and the traceback
# line above it; a line can be a whole JSON request or a progress bar's thousand redraws.
APP_LOG_LINES = 20
APP_LOG_LINE_CHARS = 300
# GitHub shows at most 1 MiB of a step's summary and fails the step beyond it.
MAX_SUMMARY_CHARS = 1_000_000

# -- rendering (render/templates.py) --------------------------------------------------------------
# A project's own template is code from the repository, run in CI: it renders in a sandbox with
# ranges, repetitions and powers bounded, within a time and a memory budget.

RENDER_SECONDS = 10
RENDER_MEMORY = 1 << 30  # bytes a render may add to the process
MAX_APP_CHARS = 1_000_000  # of one rendered app
MAX_REPEAT = 100_000  # "x" * n, [..] * n
MAX_EXPONENT = 1_000

# -- endpoints and local servers (local/) ---------------------------------------------------------

MAX_REPLY_BYTES = 10 * 1024 * 1024  # read of one reply: an endpoint can answer without end
MAX_LEARNED_MODELS = 1001  # a base and as many adapters as a deployment may declare
STATE_BYTES = 64 * 1024  # what serve --local writes is a few hundred bytes
