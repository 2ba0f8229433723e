"""`python -m backend render`: shade a G-buffer EXR with a weight bank, write .exr or .png."""

from __future__ import annotations

from backend.commands.argument_types import torch_device


def add_arguments(parser) -> None:
    parser.add_argument("--bank", required=True, help="weight bank (.nfbank)")
    parser.add_argument("--gbuffer", required=True, help="G-buffer EXR (a dataset sample or a preview frame)")
    parser.add_argument("--out", required=True, help="output image, .exr (linear) or .png (sRGB)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out even if no render wrote it")
    parser.add_argument("--renderer", default="torch", help="torch (the reference), pycuda, emulated or auto")
    parser.add_argument("--device", type=torch_device, help="torch device for the torch renderer (cpu or cuda)")
    parser.add_argument("--background", default="auto",
                        help="auto (the sample's ground truth if next to it, else grey), R,G,B or an EXR")


def run(args) -> int:
    from backend.rendering import render_file

    result = render_file(args.bank, args.gbuffer, args.out, renderer=args.renderer, background=args.background,
                         device=args.device, overwrite=args.overwrite)
    print(f"{result['out']}: {result['width']}x{result['height']}, {result['lights']} light(s), "
          f"{result['covered_pixels']} face pixels, {result['renderer']} renderer {result['ms']:.1f} ms")
    return 0
