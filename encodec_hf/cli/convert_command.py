"""`encodec-hf convert`: an original EnCodec or audiocraft checkpoint to a model folder."""

from __future__ import annotations

from .common import CommandError, Commands, preset_names


def add_parser(commands: Commands) -> None:
    conv = commands.add_parser("convert", help="convert an original EnCodec or audiocraft checkpoint to a Hub folder")
    conv.add_argument(
        "checkpoint", nargs="?", help="encodec_24khz-*.th, encodec_48khz-*.th or compression_state_dict.bin"
    )
    conv.add_argument("--model", choices=preset_names(), help="which model the checkpoint holds")
    conv.add_argument(
        "--random",
        metavar="PRESET",
        choices=preset_names(training=True),
        help="instead of a checkpoint: a model of this preset with random weights, to try the package offline",
    )
    conv.add_argument("--seed", type=int, default=0, help="with --random: the weights' seed")
    conv.add_argument("--with-lm", action="store_true", help="with --random: a random language model too")
    conv.add_argument("--output", required=True, help="folder to write")
    conv.add_argument(
        "--lm-checkpoint",
        default=None,
        help="the original's entropy-coding language model (encodec_lm_24khz-*.th, encodec_lm_48khz-*.th)",
    )
    conv.set_defaults(func=convert)


def convert(args) -> int:
    from ..convert_encodec import convert_checkpoint, random_model

    if (args.checkpoint is None) == (args.random is None):
        raise CommandError("pass a CHECKPOINT with --model NAME, or --random PRESET for a model with random weights")
    if args.random is not None:
        from ..processing import EncodecFeatureExtractor

        model = random_model(args.random, seed=args.seed, language_model=args.with_lm)
        model.save_pretrained(args.output)
        EncodecFeatureExtractor.from_model_config(model.config).save_pretrained(args.output)
        print(
            f"wrote {args.output}: {args.random} with random weights (seed {args.seed}); codes and audio mean nothing"
        )
        return 0
    if args.model is None:
        raise CommandError("--model NAME: which model the checkpoint holds")
    convert_checkpoint(args.checkpoint, args.model, args.output, lm_checkpoint=args.lm_checkpoint)
    extra = ", language_model/" if args.lm_checkpoint else ""
    print(
        f"wrote {args.output} (config.json, model.safetensors, preprocessor_config.json{extra}) from {args.checkpoint}"
    )
    return 0
