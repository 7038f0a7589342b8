"""The validation cache: outcomes by blob id, in memory and in a file, never a wrong result.

Every test compares what ``load_repository`` gives with the cache to what it gives without
it: the cache may only save work. Repositories are real git repositories in tmp dirs (read
as ``GitTree``, blob ids from git) or files in memory (blob ids computed from the bytes).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from gitutil import git, identity, isolate_git, write_files
from hypothesis import given
from hypothesis import strategies as st

from controller.blobcache import BlobCache
from controller.check import cache_path, check_change
from controller.gitops import GitTree, repository
from controller.manifests import LoadResult, ValidationCache, load_repository
from controller.manifests.cache import cache_version
from controller.model import digest, spec_to_dict
from controller.repofiles import MemoryFiles

CONFIG = """\
apiVersion: relctl/v1
kind: Config
targetApps:
  gcash: {name: GCash, testersMax: 3}
  dana: {name: DANA, grayscaleValues: [10, 50]}
"""
ACCESS = """\
apiVersion: relctl/v1
kind: Access
members:
  - {email: maria@example.com, name: Maria, role: master}
"""
MARIA = identity("Maria", "maria@example.com")


def manifest(
    mini_program: str = "shop",
    target_app: str = "gcash",
    *,
    version: str = "1.4.0",
    grayscale: int = 0,
    testers_file: str | None = None,
) -> str:
    files = f"\n    testersFiles: [{testers_file}]" if testers_file else ""
    return f"""\
apiVersion: relctl/v1
kind: Release
metadata:
  miniProgram: {mini_program}
  targetApp: {target_app}
spec:
  version: "{version}"
  basicInfo: {{name: Shop, description: Browse and pay.}}
  configuration: {{pages: [pages/index/index], window: {{title: "Shop"}}}}
  pilot:
    testers: ["2088000000000001"]{files}
  grayscale: {grayscale}
"""


def base_files() -> dict[str, str]:
    return {
        "relctl.yaml": CONFIG,
        "access.yaml": ACCESS,
        "releases/shop/gcash.yaml": manifest(testers_file="testers/gcash.csv"),
        "releases/shop/testers/gcash.csv": "userId\n2088000000000002\n",
        "releases/shop/dana.yaml": manifest(target_app="dana", grayscale=10),
        "releases/cart/gcash.yaml": manifest("cart"),
    }


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    commit(root, base_files())
    return root


def commit(root: Path, files: dict[str, str | None], message: str = "change") -> str:
    write_files(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message, env=MARIA)
    return git(root, "rev-parse", "HEAD")


def load(root: Path, cache: ValidationCache | None = None) -> LoadResult:
    with repository(root) as handle:
        return load_repository(GitTree(handle, "HEAD"), cache=cache)


# --------------------------------------------------------------------------------------------
# Hits and misses by content
# --------------------------------------------------------------------------------------------


def test_an_unchanged_blob_is_not_validated_again(repo: Path) -> None:
    cache = ValidationCache.open(None)
    first = load(repo, cache)
    assert (cache.stats.hits, cache.stats.misses) == (0, 3)
    second = load(repo, cache)
    assert (cache.stats.hits, cache.stats.misses) == (3, 0)
    assert first == second == load(repo)
    assert [r.key for r in second.releases] == ["cart/gcash", "shop/dana", "shop/gcash"]


def test_a_changed_manifest_alone_is_validated_again(repo: Path) -> None:
    cache = ValidationCache.open(None)
    load(repo, cache)
    commit(repo, {"releases/cart/gcash.yaml": manifest("cart", grayscale=20)})
    result = load(repo, cache)
    assert (cache.stats.hits, cache.stats.misses) == (2, 1)
    assert result == load(repo)
    assert {r.key: r.spec.grayscale for r in result.releases}["cart/gcash"] == 20


def test_a_changed_tester_file_invalidates_the_manifest_that_uses_it(repo: Path) -> None:
    cache = ValidationCache.open(None)
    assert load(repo, cache).ok
    commit(repo, {"releases/shop/testers/gcash.csv": "userId\n2088000000000002\nnot-an-id\n"})
    result = load(repo, cache)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.stale) == (2, 1, 1)
    assert result == load(repo)
    assert [(p.file, p.line, p.code) for p in result.errors] == [
        ("releases/shop/testers/gcash.csv", 3, "tester-id")
    ]
    commit(repo, {"releases/shop/testers/gcash.csv": None})  # now missing
    result = load(repo, cache)
    assert [p.code for p in result.errors] == ["tester-file-missing"]
    assert result == load(repo)


def test_a_work_tree_is_keyed_by_the_blob_ids_of_its_bytes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write_files(root, base_files())
    cache = ValidationCache.open(None)
    assert load_repository(root, cache=cache) == load_repository(root)
    assert load_repository(root, cache=cache) == load_repository(root)
    assert (cache.stats.hits, cache.stats.misses) == (3, 0)
    write_files(root, {"releases/shop/dana.yaml": manifest(target_app="dana", grayscale=20)})
    result = load_repository(root, cache=cache)
    assert (cache.stats.hits, cache.stats.misses) == (2, 1)
    assert result == load_repository(root) and [p.code for p in result.errors] == [
        "grayscale-value"
    ]


def test_a_config_change_the_checks_read_misses_one_they_do_not_read_hits(repo: Path) -> None:
    cache = ValidationCache.open(None)
    load(repo, cache)
    commit(repo, {"relctl.yaml": CONFIG + 'stopTheLine: "incident 42"\n'})
    assert load(repo, cache) == load(repo)
    assert (cache.stats.hits, cache.stats.misses) == (3, 0)
    commit(repo, {"relctl.yaml": CONFIG.replace("testersMax: 3", "testersMax: 1")})
    result = load(repo, cache)
    assert (cache.stats.hits, cache.stats.misses) == (0, 3)
    assert result == load(repo)
    assert [p.code for p in result.errors] == ["tester-limit"]


def test_cross_file_checks_run_on_cached_outcomes(repo: Path) -> None:
    cache = ValidationCache.open(None)
    load(repo, cache)
    commit(repo, {"releases/shop/dana.yml": manifest(target_app="dana")})
    result = load(repo, cache)
    assert result == load(repo)
    assert sorted((p.file, p.code) for p in result.errors) == [
        ("releases/shop/dana.yaml", "duplicate-release"),
        ("releases/shop/dana.yml", "duplicate-release"),
    ]
    assert "shop/dana" in result.invalid
    assert cache.stats.hits == 3  # dana.yaml came from the cache, and is still refused


def test_only_releases_leaves_the_others_unbuilt_but_validated(repo: Path) -> None:
    cache = ValidationCache.open(None)
    path = repo.parent / "cache"
    cache = ValidationCache.open(path)
    load(repo, cache)
    cache.save()
    commit(repo, {"releases/cart/gcash.yaml": manifest("cart", version="1.4")})  # invalid
    with repository(repo) as handle:
        tree = GitTree(handle, "HEAD")
        result = load_repository(
            tree, cache=ValidationCache.open(path), only_releases={"shop/dana"}
        )
        full = load_repository(tree)
    assert [r.key for r in result.releases] == ["shop/dana"]
    assert result.problems == full.problems and result.invalid == full.invalid


# --------------------------------------------------------------------------------------------
# The file: cold starts, versions, damage, lies, concurrent writers
# --------------------------------------------------------------------------------------------


def test_a_saved_cache_serves_a_cold_start(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "cache" / "validation"
    cache = ValidationCache.open(path)
    expected = load(repo, cache)
    assert cache.save() and path.is_file()
    assert not cache.save()  # nothing changed: nothing written
    again = ValidationCache.open(path)
    assert load(repo, again) == expected
    assert (again.stats.hits, again.stats.misses) == (3, 0)


def test_a_cache_of_another_version_is_discarded(
    repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "validation"
    cache = ValidationCache.open(path)
    load(repo, cache)
    cache.save()
    store = BlobCache.open(path, cache_version())
    other = BlobCache(path, "relctl 0.0.1 schemas x code y")
    for key in store:
        other.put(key, store.get(key) or "")
    other.save()
    with caplog.at_level(logging.WARNING, logger="relctl"):
        reopened = ValidationCache.open(path)
    assert len(reopened) == 0
    assert "another version" in caplog.text
    assert load(repo, reopened) == load(repo)
    assert reopened.stats.misses == 3


def _damaged(data: bytes) -> Iterator[tuple[str, bytes]]:
    header, _, body = data.partition(b"\n")
    yield "truncated", data[: len(data) // 2]
    yield "one byte changed", header + b"\n" + body[:10] + bytes([body[10] ^ 1]) + body[11:]
    yield "empty", b""
    yield "header only", header + b"\n"
    yield "not json", b"\x00\xff garbage\n" + body
    yield "a pickle", b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00."


@pytest.mark.parametrize("case", [name for name, _ in _damaged(b"h\n0123456789abcdef")])
def test_a_corrupt_or_truncated_cache_is_discarded_and_the_result_is_right(
    repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    path = tmp_path / "validation"
    cache = ValidationCache.open(path)
    load(repo, cache)
    cache.save()
    damaged = dict(_damaged(path.read_bytes()))[case]
    path.write_bytes(damaged)
    with caplog.at_level(logging.WARNING, logger="relctl"):
        reopened = ValidationCache.open(path)
    assert len(reopened) == 0
    if damaged:
        assert "discarded" in caplog.text
    assert load(repo, reopened) == load(repo)
    assert reopened.save()  # the bad file is replaced
    assert len(ValidationCache.open(path)) == 3


def _rewrite_entries(path: Path, change: dict[str, str]) -> None:
    """Rewrite entries of a cache file as a well-formed file (a valid header and checksum)."""
    store = BlobCache.open(path, cache_version())
    for key in list(store):
        store.put(key, change.get(key, store.get(key) or ""))
    store._dirty = True
    store.save()


def test_an_entry_that_does_not_decode_is_dropped_not_trusted(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "validation"
    cache = ValidationCache.open(path)
    load(repo, cache)
    cache.save()
    keys = list(BlobCache.open(path, cache_version()))
    _rewrite_entries(
        path,
        {
            keys[0]: '{"problems":[["x", "one", 1]],"checked":true,"depends":[],"valid":false}\x1e',
            keys[1]: "[]\x1e",
            keys[2]: '{"problems":[],"checked":true,"depends":[],"valid":true}\x1e{"path": 1}',
        },
    )
    reopened = ValidationCache.open(path)
    assert load(repo, reopened) == load(repo)
    assert (reopened.stats.hits, reopened.stats.misses) == (0, 3)


def test_a_well_formed_lie_is_served_the_file_is_trusted_like_the_state(
    repo: Path, tmp_path: Path
) -> None:
    """What is guaranteed, and what is not: a file that decodes, with a valid checksum, is
    believed for the blobs it names (it is the controller's own, in its work directory);
    damage is detected, a forger with write access to the work directory is not."""
    path = tmp_path / "validation"
    cache = ValidationCache.open(path)
    load(repo, cache)
    cache.save()
    store = BlobCache.open(path, cache_version())
    keys = list(store)
    lie = '{"problems":[["releases/cart/gcash.yaml",1,1,"","error","forged","a lie",null]],'
    lie += '"checked":true,"depends":[],"valid":false}\x1e'
    _rewrite_entries(path, dict.fromkeys(keys, lie))
    served = load(repo, ValidationCache.open(path))
    assert {p.code for p in served.errors} == {"forged"}
    assert load(repo) != served and load(repo).ok  # without the file: the truth


def _save_many(path: str, marker: str, rounds: int) -> None:
    for index in range(rounds):
        store = BlobCache(Path(path), "v")
        for n in range(200):
            store.put(f"{marker}{n}", json.dumps([marker, index, "x" * 50]))
        store.save()


def test_concurrent_writers_leave_one_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "validation"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_save_many, args=(str(path), marker, 30)) for marker in "ab"]
    for writer in writers:
        writer.start()
    while any(w.is_alive() for w in writers):
        store = BlobCache.open(path, "v")
        assert len(store) in (0, 200)  # nothing yet, or one writer's whole file
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    final = BlobCache.open(path, "v")
    assert len(final) == 200 and len({key[0] for key in final}) == 1
    assert [p.name for p in path.parent.iterdir()] == ["validation"]  # no temporary left


def test_the_cache_is_bounded_least_recently_used_first_out(tmp_path: Path) -> None:
    store = BlobCache(tmp_path / "c", "v", max_entries=3)
    for key in "abc":
        store.put(key, key)
    assert store.get("a") == "a"
    store.put("d", "d")
    assert list(store) == ["c", "a", "d"]
    store.save()
    assert list(BlobCache.open(tmp_path / "c", "v", max_entries=2)) == ["a", "d"]
    with pytest.raises(ValueError):
        store.put("e", "two\nlines")


# --------------------------------------------------------------------------------------------
# The result is the same as without the cache, whatever the edits (property)
# --------------------------------------------------------------------------------------------

MANIFESTS = ["releases/shop/gcash.yaml", "releases/shop/dana.yaml", "releases/cart/gcash.yaml"]
TESTERS = "releases/shop/testers/gcash.csv"
VARIANTS = [
    manifest(testers_file="testers/gcash.csv"),
    manifest(grayscale=30),
    manifest(target_app="dana", grayscale=10),
    manifest(target_app="dana", grayscale=20),  # not a grayscale DANA offers
    manifest("cart"),
    manifest(version="1.4"),  # schema: not x.y.z
    manifest(testers_file="testers/missing.csv"),
    manifest(testers_file="../../outside.csv"),
    manifest(target_app="unknown"),
    "apiVersion: relctl/v1\nkind: Release\nmetadata: [\n",  # YAML syntax
    "a: 1\na: 2\n",  # duplicate key
    None,  # deleted
]
TESTER_FILES = [
    "userId\n2088000000000002\n",
    "2088000000000002\n2088000000000002\n",  # a duplicate: a warning
    "userId\n2088000000000003\n2088000000000004\n2088000000000005\n",  # over testersMax
    "bad id\n",
    None,
]
CONFIGS = [
    CONFIG,
    CONFIG + 'stopTheLine: "incident"\n',
    CONFIG.replace("testersMax: 3", "testersMax: 1"),
    CONFIG.replace("  dana: {name: DANA, grayscaleValues: [10, 50]}\n", ""),
    "apiVersion: relctl/v1\nkind: Config\n",  # invalid: no target apps
]

EDITS = st.one_of(
    st.tuples(st.sampled_from(MANIFESTS), st.sampled_from(VARIANTS)),
    st.tuples(st.just(TESTERS), st.sampled_from(TESTER_FILES)),
    st.tuples(st.just("relctl.yaml"), st.sampled_from(CONFIGS)),
    st.tuples(st.just("releases/shop/gcash.yml"), st.sampled_from([None, manifest()])),
    st.tuples(st.just("save"), st.none()),
)


@given(st.lists(EDITS, min_size=1, max_size=8))
def test_results_with_the_cache_equal_results_without_it(
    edits: list[tuple[str, str | None]],
) -> None:
    files = {path: text.encode() for path, text in base_files().items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "validation"
        cache = ValidationCache.open(path)
        for target, text in [("save", None), *edits]:
            if target == "save":  # a cold start from the file
                cache.save()
                cache = ValidationCache.open(path)
            elif text is None:
                files.pop(target, None)
            else:
                files[target] = text.encode()
            tree = MemoryFiles(dict(files))
            cached, fresh = load_repository(tree, cache=cache), load_repository(tree)
            assert cached == fresh
            # The spec digest kept in the entry is the one computed from the spec.
            assert [r.spec_hash for r in cached.releases] == [
                digest(spec_to_dict(r.spec)) for r in fresh.releases
            ]
            narrowed = ["releases/shop", TESTERS]
            assert load_repository(tree, narrowed, cache=cache) == load_repository(tree, narrowed)


# --------------------------------------------------------------------------------------------
# relctl check --base: a pull request that touches one manifest validates that one
# --------------------------------------------------------------------------------------------


def test_check_base_validates_only_the_manifest_a_pull_request_touches(repo: Path) -> None:
    for index in range(20):
        commit(repo, {f"releases/mp{index:02d}/gcash.yaml": manifest(f"mp{index:02d}")}, "more")
    git(repo, "checkout", "-q", "-b", "pr")
    commit(repo, {"releases/mp07/gcash.yaml": manifest("mp07", version="1.5.0")})
    first = check_change(repo, "main", "pr")
    cached = cache_path(repo)
    assert cached is not None and cached.is_file() and cached.parent.name == "relctl"
    assert first.revalidated == 23  # cold: every manifest
    commit(repo, {"releases/mp07/gcash.yaml": manifest("mp07", version="1.3.0")})
    second = check_change(repo, "main", "pr")
    assert second.revalidated == 1
    assert [p.code for p in second.errors] == ["version-not-increasing"]
    uncached = check_change(repo, "main", "pr", use_cache=False)
    assert (second.problems, second.files) == (uncached.problems, uncached.files)
    assert uncached.revalidated == 23


def test_check_base_does_not_rewrite_a_large_cache_for_a_few_new_blobs(repo: Path) -> None:
    """A push that changes one manifest of many validates it (~0.1 ms) rather than rewrite
    the whole cache file (~3.5 us an entry); the cold run and large changes are saved."""
    for index in range(40):
        commit(repo, {f"releases/mp{index:02d}/gcash.yaml": manifest(f"mp{index:02d}")}, "more")
    git(repo, "checkout", "-q", "-b", "pr")
    commit(repo, {"releases/mp07/gcash.yaml": manifest("mp07", version="1.5.0")})
    assert check_change(repo, "main", "pr").revalidated == 43
    cached = cache_path(repo)
    assert cached is not None
    saved = cached.read_bytes()
    commit(repo, {"releases/mp08/gcash.yaml": manifest("mp08", version="1.5.0")})
    assert check_change(repo, "main", "pr").revalidated == 1  # mp07's head blob was cached
    assert cached.read_bytes() == saved  # not rewritten for one new blob
    assert check_change(repo, "main", "pr").revalidated == 1  # so mp08 is validated again
    commit(
        repo,
        {
            f"releases/mp{i:02d}/gcash.yaml": manifest(f"mp{i:02d}", version="1.6.0")
            for i in range(20)
        },
    )
    assert check_change(repo, "main", "pr").revalidated == 20
    assert cached.read_bytes() != saved
    assert check_change(repo, "main", "pr").revalidated == 0


def test_check_base_with_a_damaged_cache_gives_the_same_verdict(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "pr")
    commit(repo, {"releases/shop/dana.yaml": manifest(target_app="dana", grayscale=0)})
    expected = check_change(repo, "main", "pr", use_cache=False)
    assert [p.code for p in expected.errors] == ["grayscale-decrease"]
    check_change(repo, "main", "pr")
    cached = cache_path(repo)
    assert cached is not None
    cached.write_bytes(cached.read_bytes()[:-7])
    again = check_change(repo, "main", "pr")
    assert again.problems == expected.problems and again.revalidated == 3
