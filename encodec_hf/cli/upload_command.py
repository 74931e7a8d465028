"""`encodec-hf upload`: a Hub folder with remote code and a model card (`hub_upload.upload`)."""

from __future__ import annotations

from .common import CommandError, Commands, preset_names


def add_parser(commands: Commands) -> None:
    up = commands.add_parser("upload", help="build a Hub folder with remote code and a model card, check it, push it")
    up.add_argument("source", help="a model folder or Hub id, or an original checkpoint file with --model")
    up.add_argument("--repo-id", required=True, help="OWNER/NAME on the Hub")
    up.add_argument("--model", choices=preset_names(), default=None, help="which model a checkpoint file holds")
    up.add_argument("--local-dir", default=None, help="build the folder here (default: a temporary folder)")
    up.add_argument("--dry-run", action="store_true", help="build and check, list the files, push nothing")
    up.add_argument("--private", action="store_true", help="create the repo as private")
    up.add_argument("--revision", default=None, help="branch to commit to (created if missing)")
    up.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    up.add_argument("--commit-message", default=None, help="the Hub commit's message (default: one naming the source)")
    up.add_argument("--license", default="cc-by-nc-4.0", help="license in the model card (default: Meta's)")
    up.add_argument("--base-model", default=None, help="base_model in the model card")
    up.set_defaults(func=upload)


def upload(args) -> int:
    from ..hub_upload import HubUploadError
    from ..hub_upload import upload as upload_folder

    try:
        upload_folder(
            args.source,
            args.repo_id,
            model_name=args.model,
            local_dir=args.local_dir,
            dry_run=args.dry_run,
            private=args.private,
            revision=args.revision,
            create_pr=args.create_pr,
            commit_message=args.commit_message,
            license=args.license,
            base_model=args.base_model,
        )
    except HubUploadError as error:
        raise CommandError(str(error)) from error
    return 0
