"""`data prepare` and `data info`: a corpus's token store, made ahead of a study or described."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from trainer.corpora import DEFAULT_TOKENIZER
from trainer.data import CACHE_ENV_VAR, data_info, default_cache_dir, open_store, prepare_data
from trainer.store import summary

from ..arguments import TOKENIZER_HELP
from ..registry import command
from ..views import metrics_table


@command("data")
def data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (f"Stores live under --cache-dir/tokens (default ${CACHE_ENV_VAR}, else ~/.cache/decoder-nas). "
                     f"Prepare once on a folder every machine reaches and point ${CACHE_ENV_VAR} there: "
                     "search, worker and train then open the store without reading the corpus again.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (("prepare", "tokenise SPEC into a token store (once; later calls only open it)"),
                            ("info", "describe the token stores prepared for SPEC, without preparing any")):
        action = actions.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        action.add_argument("spec", metavar="SPEC", help="a text file or folder, hf:NAME[:CONFIG][@SPLIT], "
                                                         "or builtin:NAME")
        if name == "prepare":
            action.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help=TOKENIZER_HELP)
        action.add_argument("--text-column", default="text", help="column of a hub dataset holding the text")
        action.add_argument("--cache-dir", type=Path, help=f"cache folder (default ${CACHE_ENV_VAR})")
        action.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run_data)


def run_data(args: argparse.Namespace, console: Console) -> None:
    cache_dir = args.cache_dir or default_cache_dir()
    if args.action == "prepare":
        data = prepare_data(args.spec, args.tokenizer, cache_dir, args.text_column)
        described = [summary(open_store(data.store))]  # reopening takes constant time
    else:
        described = data_info(args.spec, cache_dir, args.text_column)
        if not described and not args.json:
            console.print(f"no token store prepared for {args.spec} under {Path(cache_dir) / 'tokens'}; "
                          f"make one with `decoder-nas data prepare {args.spec} --tokenizer T`")
    if args.json:
        print(json.dumps(described))
        return
    for entry in described:
        console.print(metrics_table(f"token store of {args.spec} ({entry['tokenizer']})", entry))

