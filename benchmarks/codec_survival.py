"""How much of a bounded change survives a real libx264 CRF 23 round trip, against the
differentiable stand-ins of the objective (h264_like intra and inter, jpeg_like): the share of
the change's energy left, sum((out - clean_out) * delta) / sum(delta^2), on 4 frames of
single_face.mp4 taken 16 apart (each frame carries its own random change).

    python benchmarks/codec_survival.py
"""
import torch, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
torch.set_num_threads(2)
from tradeoff import load_frames
from vdf_stream import assets
from vdf_stream.evaluation import degradations
from vdf_stream.protection.objective import h264_like, jpeg_like
clip = str(assets.fetch("single_face.mp4", progress=False))
frames, info = load_frames(clip, 4, 16)
u8 = lambda t: torch.round(t.clamp(0,1)*255).to(torch.uint8)
g = torch.Generator().manual_seed(0)
# a luma perturbation: low-mid frequency pattern, +-4 levels
noise = torch.randn(4,1,360//4,640//4, generator=g)
noise = torch.nn.functional.interpolate(noise, size=(360,640), mode='bilinear')
noise = noise / noise.abs().amax() * 6/255
for name, delta in [("mid-freq luma", noise.expand(-1,3,-1,-1)),
                    ("pixel luma", torch.sign(torch.randn(4,1,360,640,generator=g)).expand(-1,3,-1,-1)*4/255),
                    ("pixel rgb", torch.sign(torch.randn(4,3,360,640,generator=g))*4/255)]:
    p = (frames + delta).clamp(0,1)
    real = degradations.h264_roundtrip(u8(p), 23, info).float()/255
    clean_real = degradations.h264_roundtrip(u8(frames), 23, info).float()/255
    surv_real = ((real-clean_real)*delta).sum()/(delta*delta).sum()
    out = [f"{name}: real crf23 survive {surv_real:.2f}"]
    for qp in (22, 26, 30):
        sim = h264_like(p, qp); simc = h264_like(frames, qp)
        out.append(f"qp{qp} {((sim-simc)*delta).sum()/(delta*delta).sum():.2f}")
    for q in (60, 90):
        sim = jpeg_like(p, q); simc = jpeg_like(frames, q)
        out.append(f"jpeg{q} {((sim-simc)*delta).sum()/(delta*delta).sum():.2f}")
    print(" ".join(out), flush=True)
fr = degradations.h264_roundtrip(u8(frames),23,info).float()/255
print("psnr real", -10*torch.log10(((fr-frames)**2).mean()).item(), "sim26", -10*torch.log10(((h264_like(frames,26)-frames)**2).mean()).item(), "sim30", -10*torch.log10(((h264_like(frames,30)-frames)**2).mean()).item())
for name, delta in [("mid-freq luma", noise.expand(-1,3,-1,-1)),
                    ("pixel luma", torch.sign(torch.randn(4,1,360,640,generator=g)).expand(-1,3,-1,-1)*4/255)]:
    p = (frames + delta).clamp(0,1)
    out=[name]
    for qp in (22, 26, 30, 34):
        sim = h264_like(p, qp, prediction=frames)
        out.append(f"inter qp{qp} {((sim-frames)*delta).sum()/(delta*delta).sum():.2f}")
    print(" ".join(out))
