"""Tests of the built-in degradation filters: scale, jpeg, gaussian_blur and median.

Generic kernel checks for every filter (input not modified, dtype and device kept, batched
equals per-frame, empty batches), then known answers and comparisons with the tools each
filter imitates (FFmpeg through PyAV, Pillow, SciPy when installed, plain NumPy otherwise).
"""

from __future__ import annotations

import io
from fractions import Fraction

import numpy
import pytest
import torch
from PIL import Image, JpegImagePlugin

from vdf_stream.media.colour import to_float, to_uint8
from vdf_stream.errors import UsageError
from vdf_stream.pipeline.filter import build_filters
from vdf_stream.filters.gaussian_blur import GaussianBlurFilter
from vdf_stream.media.pixels import gaussian_blur2d, gaussian_kernel1d, reflect_indices, reflect_pad2d
from vdf_stream.filters.jpeg import JpegFilter
from vdf_stream.filters.median import MedianFilter, median_blur2d
from vdf_stream.filters.scale import ScaleFilter, resize, scaled_size
from vdf_stream.media.frames import Frames, VideoInfo

TIME_BASE = Fraction(1, 25)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def make_frames(data: torch.Tensor, format: str) -> Frames:
    count = data.shape[0]
    return Frames(data, format, [10 * i for i in range(count)], list(range(count)), TIME_BASE)


def random_rgbf32(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=generator)


def random_rgb24(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), generator=generator,
                         dtype=torch.uint8)


def smooth_rgbf32(batch: int, height: int, width: int) -> torch.Tensor:
    """Slowly varying colour images (like a face lit softly), different per frame."""
    rows = torch.linspace(0, 1, height).view(1, 1, height, 1)
    columns = torch.linspace(0, 1, width).view(1, 1, 1, width)
    phase = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1)
    channel = torch.arange(3, dtype=torch.float32).view(1, 3, 1, 1)
    images = 0.5 + 0.35 * torch.sin(2.0 * rows + 3.0 * columns + phase + channel)
    return images.clamp(0, 1)


def setup_filter(filter, height: int, width: int, sample_aspect_ratio=None):
    info = VideoInfo(width, height, TIME_BASE, sample_aspect_ratio=sample_aspect_ratio)
    return filter.setup(info, torch.device("cpu"))


def psnr(reference: torch.Tensor, other: torch.Tensor) -> float:
    error = (reference.double() - other.double()).pow(2).mean().item()
    peak = 255.0 if reference.dtype == torch.uint8 else 1.0
    return float("inf") if error == 0 else 10.0 * numpy.log10(peak * peak / error)


# ---------------------------------------------------------------------------------------
# Generic checks, every filter in every layout it accepts

CASES = {
    "scale-down-bicubic-rgbf32": (lambda: ScaleFilter(ScaleFilter.Options(w=20, h=-2)), "rgbf32"),
    "scale-up-lanczos-rgbf32": (
        lambda: ScaleFilter(ScaleFilter.Options(factor=1.5, interpolation="lanczos")), "rgbf32"),
    "scale-area-rgb24": (
        lambda: ScaleFilter(ScaleFilter.Options(w=13, h=9, interpolation="area")), "rgb24"),
    "scale-nearest-rgb24": (
        lambda: ScaleFilter(ScaleFilter.Options(w=50, interpolation="nearest")), "rgb24"),
    "scale-bilinear-rgbf32": (
        lambda: ScaleFilter(ScaleFilter.Options(h=11, interpolation="bilinear")), "rgbf32"),
    "jpeg-rgb24": (lambda: JpegFilter(JpegFilter.Options(quality=60)), "rgb24"),
    "jpeg-rgbf32": (lambda: JpegFilter(JpegFilter.Options(quality=30, subsampling="422")),
                    "rgbf32"),
    "gaussian_blur-rgbf32": (lambda: GaussianBlurFilter(GaussianBlurFilter.Options(sigma=1.5)),
                             "rgbf32"),
    "median-rgbf32": (lambda: MedianFilter(MedianFilter.Options(size=3)), "rgbf32"),
    "median-rgb24": (lambda: MedianFilter(MedianFilter.Options(size=5)), "rgb24"),
}


def case_data(format: str, batch: int = 3, height: int = 24, width: int = 32) -> torch.Tensor:
    if format == "rgb24":
        return random_rgb24(batch, height, width)
    return random_rgbf32(batch, height, width)


@pytest.fixture(params=sorted(CASES))
def case(request):
    make_filter, format = CASES[request.param]
    return make_filter, format


def test_accepted_formats_are_declared(case):
    make_filter, format = case
    assert format in make_filter().formats


def test_input_not_modified_and_dtype_device_kept(case):
    make_filter, format = case
    filter = make_filter()
    info = setup_filter(filter, 24, 32)
    data = case_data(format)
    original = data.clone()
    frames = make_frames(data, format)
    result = filter.process(frames)
    assert torch.equal(data, original)
    assert result.data is not data
    assert result.format == format
    assert result.data.dtype == data.dtype
    assert result.data.device == data.device
    assert result.pts == frames.pts and result.indices == frames.indices
    assert (result.width, result.height) == (info.width, info.height)
    if format == "rgbf32":
        assert 0.0 <= result.data.min().item() and result.data.max().item() <= 1.0


def test_batched_equals_per_frame(case):
    make_filter, format = case
    filter = make_filter()
    setup_filter(filter, 24, 32)
    frames = make_frames(case_data(format, batch=4), format)
    batched = filter.process(frames).data
    single = torch.cat([filter.process(frame).data for frame in frames.split()])
    if format == "rgb24":
        assert torch.equal(batched, single)
    else:
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)


def test_empty_batch(case):
    make_filter, format = case
    filter = make_filter()
    info = setup_filter(filter, 24, 32)
    data = case_data(format, batch=0)
    result = filter.process(make_frames(data, format))
    assert tuple(result.data.shape) == (0, 3, info.height, info.width)
    assert result.data.dtype == data.dtype


def test_rejects_other_layouts(case):
    make_filter, _ = case
    filter = make_filter()
    setup_filter(filter, 24, 32)
    yuv = torch.zeros(1, 1, 36, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="accepts"):
        filter.process(make_frames(yuv, "yuv420p"))


def test_description_and_option_help():
    for cls in (ScaleFilter, JpegFilter, GaussianBlurFilter, MedianFilter):
        assert cls.name and cls.description and "\n" not in cls.description
        for option in cls.Options.__dataclass_fields__.values():
            assert option.metadata.get("help"), f"{cls.name}.{option.name} has no help"


@CUDA
@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_matches_cpu(name):
    make_filter, format = CASES[name]
    filter = make_filter()
    setup_filter(filter, 24, 32)
    data = case_data(format)
    on_cpu = filter.process(make_frames(data, format)).data
    on_cuda = filter.process(make_frames(data.cuda(), format)).data
    assert on_cuda.device.type == "cuda"
    if format == "rgb24":  # a rounding difference of one level is allowed
        assert (on_cuda.cpu().int() - on_cpu.int()).abs().max().item() <= 1
    else:
        torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Graph parsing


def test_build_filters_parses_the_whole_chain():
    filters = build_filters("scale=w=320:h=-2,jpeg=quality=50,gaussian_blur=sigma=1.0,median")
    assert [type(f) for f in filters] == [ScaleFilter, JpegFilter, GaussianBlurFilter,
                                          MedianFilter]
    scale, jpeg, blur, median = filters
    assert (scale.options.w, scale.options.h, scale.options.interpolation) == (320, -2, "bicubic")
    assert (jpeg.options.quality, jpeg.options.subsampling) == (50, "420")
    assert blur.options.sigma == 1.0 and blur.options.radius == 0
    assert median.options.size == 3

    info = VideoInfo(640, 360, TIME_BASE)
    for filter in filters:
        info = filter.setup(info, torch.device("cpu"))
    assert info.size == (320, 180)
    frames = make_frames(smooth_rgbf32(2, 360, 640), "rgbf32")
    for filter in filters:
        if frames.format not in filter.formats:
            frames = make_frames(to_uint8(frames.data) if filter.formats[0] == "rgb24"
                                 else to_float(frames.data), filter.formats[0])
        frames = filter.process(frames)
    assert (frames.width, frames.height) == (320, 180)


def test_positional_options_and_literal_choices():
    scale, jpeg = build_filters("scale=64:48:0:lanczos,jpeg=90:444")
    assert (scale.options.w, scale.options.h, scale.options.interpolation) == (64, 48, "lanczos")
    assert (jpeg.options.quality, jpeg.options.subsampling) == (90, "444")


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(UsageError) as caught:
        build_filters("jpeg=qualty=50")
    message = str(caught.value)
    assert "qualty" in message and "quality" in message and "subsampling" in message
    with pytest.raises(UsageError) as caught:
        build_filters("gaussian_blur=size=3")
    assert "sigma" in str(caught.value) and "radius" in str(caught.value)


@pytest.mark.parametrize("graph", [
    "scale", "scale=w=-1:h=-1", "scale=factor=0.5:w=100", "scale=factor=-1",
    "scale=w=10:interpolation=cubic",
    "jpeg=quality=0", "jpeg=quality=101", "jpeg=subsampling=411",
    "gaussian_blur=sigma=0", "gaussian_blur=sigma=-1", "gaussian_blur=radius=-1",
    "median=size=4", "median=size=1",
])
def test_bad_options_are_usage_errors(graph):
    with pytest.raises(UsageError):
        build_filters(graph)


def test_setup_validates_options_built_directly():
    with pytest.raises(UsageError, match="quality"):
        setup_filter(JpegFilter(JpegFilter.Options(quality=0)), 8, 8)
    with pytest.raises(UsageError, match="size"):
        setup_filter(MedianFilter(MedianFilter.Options(size=2)), 8, 8)
    with pytest.raises(UsageError, match="sigma"):
        setup_filter(GaussianBlurFilter(GaussianBlurFilter.Options(sigma=0.0)), 8, 8)
    with pytest.raises(UsageError):
        setup_filter(ScaleFilter(), 8, 8)


# ---------------------------------------------------------------------------------------
# scale

SIZE_CASES = [
    # (input width, input height, w, h, factor, FFmpeg's expression or None, expected size)
    (640, 480, 320, -1, 0.0, "w=320:h=-1", (320, 240)),
    (640, 360, -1, 240, 0.0, "w=-1:h=240", (427, 240)),
    (640, 360, -2, 240, 0.0, "w=-2:h=240", (426, 240)),
    (1280, 720, 320, -2, 0.0, "w=320:h=-2", (320, 180)),
    (1920, 1080, -2, 481, 0.0, "w=-2:h=481", (856, 481)),
    (97, 31, -4, 19, 0.0, "w=-4:h=19", (60, 19)),
    (100, 100, 0, 50, 0.0, "w=0:h=50", (100, 50)),
    (300, 200, 150, 150, 0.0, "w=150:h=150", (150, 150)),
    (640, 480, -1, -1, 0.5, "w=iw*0.5:h=ih*0.5", (320, 240)),
    (641, 481, -1, -1, 0.5, "w=iw*0.5:h=ih*0.5", (320, 240)),
    (100, 100, -1, -1, 0.29, None, (29, 29)),
    (64, 48, -1, -1, 2.5, "w=iw*2.5:h=ih*2.5", (160, 120)),
]


@pytest.mark.parametrize("width, height, w, h, factor, expression, expected", SIZE_CASES)
def test_scaled_size(width, height, w, h, factor, expression, expected):
    assert scaled_size(width, height, w, h, factor) == expected
    filter = ScaleFilter(ScaleFilter.Options(w=w, h=h, factor=factor))
    assert setup_filter(filter, height, width).size == expected


def ffmpeg_scaled_size(width: int, height: int, expression: str) -> tuple[int, int]:
    """The size FFmpeg's own scale filter picks, through PyAV's filter graph."""
    import av

    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="rgb24", time_base=TIME_BASE)
    scale = graph.add("scale", expression)
    sink = graph.add("buffersink")
    source.link_to(scale)
    scale.link_to(sink)
    graph.configure()
    graph.push(av.VideoFrame(width, height, "rgb24"))
    frame = graph.pull()
    return frame.width, frame.height


@pytest.mark.parametrize("width, height, w, h, factor, expression, expected",
                         [case for case in SIZE_CASES if case[5]])
def test_scaled_size_agrees_with_ffmpeg(width, height, w, h, factor, expression, expected):
    try:
        reference = ffmpeg_scaled_size(width, height, expression)
    except Exception as error:  # a PyAV without filter graphs
        pytest.skip(f"FFmpeg's scale filter is not usable through PyAV: {error}")
    assert reference == expected


@pytest.mark.parametrize("w, h, factor", [(-1, -1, 0.0), (10, -1, 0.5), (-1, -1, 0.001),
                                          (-2, -1, 0.0), (1, -1, 0.0)])
def test_scaled_size_rejects_empty_or_missing_sizes(w, h, factor):
    # (1, -1) on a 100x10 input derives a height of 0.1, rounded to 0.
    with pytest.raises(UsageError):
        scaled_size(100, 10, w, h, factor)
    with pytest.raises(UsageError):
        setup_filter(ScaleFilter(ScaleFilter.Options(w=w, h=h, factor=factor)), 10, 100)


def test_scale_adjusts_the_sample_aspect_ratio_like_ffmpeg():
    filter = ScaleFilter(ScaleFilter.Options(w=320, h=320))
    assert setup_filter(filter, 480, 640, Fraction(1, 1)).sample_aspect_ratio == Fraction(4, 3)
    filter = ScaleFilter(ScaleFilter.Options(w=320, h=-1))
    assert setup_filter(filter, 480, 640, Fraction(1, 1)).sample_aspect_ratio == Fraction(1, 1)
    assert setup_filter(filter, 480, 640).sample_aspect_ratio is None


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "area", "nearest", "lanczos"])
def test_scale_of_a_constant_image_is_constant(interpolation):
    images = torch.full((2, 3, 37, 53), 0.3)
    for size in ((20, 30), (17, 11), (80, 101)):
        resized = resize(images, size, interpolation)
        assert resized.shape == (2, 3) + size
        torch.testing.assert_close(resized, torch.full_like(resized, 0.3), rtol=0, atol=1e-6)


@pytest.mark.parametrize("interpolation, tolerance", [
    ("bicubic", 2e-3), ("lanczos", 2e-3), ("bilinear", 1e-2), ("area", 1e-2), ("nearest", 1e-6),
])
def test_scale_up_down_roundtrip_of_a_smooth_image(interpolation, tolerance):
    images = smooth_rgbf32(2, 40, 48)
    up = resize(images, (80, 96), interpolation)
    down = resize(up, (40, 48), interpolation)
    assert (down - images).abs().mean().item() < tolerance


PILLOW_KERNELS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


@pytest.mark.parametrize("interpolation", sorted(PILLOW_KERNELS))
@pytest.mark.parametrize("size", [(20, 30), (60, 90), (37, 20), (16, 53)])
def test_scale_matches_pillow_float_resampling(interpolation, size):
    """Pillow resamples 32-bit float images ("F" mode) without rounding: a clean reference."""
    plane = random_rgbf32(1, 37, 53)[:, :1]
    ours = resize(plane, size, interpolation)[0, 0].numpy()
    image = Image.fromarray(plane[0, 0].numpy())
    reference = numpy.asarray(image.resize((size[1], size[0]), PILLOW_KERNELS[interpolation]))
    numpy.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)


def test_scale_area_averages_covered_pixels():
    images = random_rgbf32(2, 24, 36)
    expected = torch.nn.functional.interpolate(images, size=(8, 12), mode="area")
    torch.testing.assert_close(resize(images, (8, 12), "area"), expected, rtol=0, atol=1e-6)
    # 3 -> 2 pixels: each output covers one and a half inputs.
    line = torch.tensor([[[[0.0, 0.6, 0.9]]]])
    torch.testing.assert_close(resize(line, (1, 2), "area"),
                               torch.tensor([[[[0.2, 0.8]]]]), rtol=0, atol=1e-6)


def test_scale_rgb24_returns_rgb24_and_clamps_rgbf32():
    filter = ScaleFilter(ScaleFilter.Options(factor=3.0, interpolation="lanczos"))
    setup_filter(filter, 8, 8)
    edges = torch.zeros(1, 3, 8, 8)
    edges[..., 4:] = 1.0  # a hard edge makes Lanczos ring past 0 and 1
    assert resize(edges, (24, 24), "lanczos").max() > 1.0
    result = filter.process(make_frames(edges, "rgbf32")).data
    assert result.min() >= 0.0 and result.max() <= 1.0
    result = filter.process(make_frames(to_uint8(edges), "rgb24"))
    assert result.format == "rgb24" and result.data.dtype == torch.uint8
    assert torch.equal(result.data, to_uint8(filter.process(make_frames(edges, "rgbf32")).data))


def test_scale_nearest_on_rgb24_copies_pixels_exactly():
    data = random_rgb24(1, 10, 10)
    filter = ScaleFilter(ScaleFilter.Options(factor=2.0, interpolation="nearest"))
    setup_filter(filter, 10, 10)
    result = filter.process(make_frames(data, "rgb24")).data
    assert torch.equal(result[..., ::2, ::2], data)


# ---------------------------------------------------------------------------------------
# jpeg


def pillow_jpeg(image: numpy.ndarray, quality: int, subsampling: str) -> numpy.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
    buffer.seek(0)
    return numpy.asarray(Image.open(buffer).convert("RGB"))


def jpeg_test_frames() -> torch.Tensor:
    """Smooth colour frames with some texture, as uint8."""
    images = smooth_rgbf32(2, 48, 64)
    texture = 0.05 * torch.sin(torch.arange(64, dtype=torch.float32) * 0.9).view(1, 1, 1, 64)
    return to_uint8((images + texture).clamp(0, 1))


@pytest.mark.parametrize("quality, subsampling, pillow_subsampling",
                         [(10, "420", "4:2:0"), (75, "420", "4:2:0"), (50, "422", "4:2:2"),
                          (95, "444", "4:4:4")])
def test_jpeg_is_bit_exact_with_pillow(quality, subsampling, pillow_subsampling):
    data = jpeg_test_frames()
    filter = JpegFilter(JpegFilter.Options(quality=quality, subsampling=subsampling))
    setup_filter(filter, 48, 64)
    result = filter.process(make_frames(data, "rgb24")).data
    for frame, output in zip(data, result):
        expected = pillow_jpeg(frame.permute(1, 2, 0).numpy(), quality, pillow_subsampling)
        assert numpy.array_equal(output.permute(1, 2, 0).numpy(), expected)


def test_jpeg_quality_controls_the_loss():
    data = jpeg_test_frames()
    scores = {}
    for quality in (10, 90, 100):
        filter = JpegFilter(JpegFilter.Options(quality=quality))
        setup_filter(filter, 48, 64)
        scores[quality] = psnr(data, filter.process(make_frames(data, "rgb24")).data)
    assert scores[100] > 40.0
    assert scores[10] < scores[90] - 5.0
    assert scores[10] < 40.0


def test_jpeg_subsampling_reaches_the_encoder():
    from vdf_stream.filters.jpeg import encode_jpeg

    image = random_rgb24(1, 16, 16)[0].permute(1, 2, 0).numpy()
    for subsampling, pillow_code in (("444", 0), ("422", 1), ("420", 2)):
        with Image.open(io.BytesIO(encode_jpeg(image, 80, subsampling))) as decoded:
            assert JpegImagePlugin.get_sampling(decoded) == pillow_code


def test_jpeg_of_rgbf32_equals_jpeg_of_its_rgb24():
    images = smooth_rgbf32(2, 48, 64)
    filter = JpegFilter(JpegFilter.Options(quality=40))
    setup_filter(filter, 48, 64)
    from_float = filter.process(make_frames(images, "rgbf32")).data
    from_bytes = filter.process(make_frames(to_uint8(images), "rgb24")).data
    assert torch.equal(from_float, to_float(from_bytes))


def test_jpeg_handles_odd_sizes():
    data = random_rgb24(2, 17, 23)
    filter = JpegFilter()
    setup_filter(filter, 17, 23)
    assert filter.process(make_frames(data, "rgb24")).data.shape == data.shape


# ---------------------------------------------------------------------------------------
# gaussian_blur


def numpy_gaussian_blur(plane: numpy.ndarray, sigma: float, radius: int) -> numpy.ndarray:
    """Direct 2-D convolution with the sampled Gaussian, mirrored borders, in float64."""
    positions = numpy.arange(-radius, radius + 1)
    kernel = numpy.exp(-(positions**2) / (2 * sigma * sigma))
    kernel2d = numpy.outer(kernel, kernel)
    kernel2d /= kernel2d.sum()
    padded = numpy.pad(plane.astype(numpy.float64), radius, mode="reflect")
    height, width = plane.shape
    out = numpy.zeros((height, width))
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out += kernel2d[dy, dx] * padded[dy : dy + height, dx : dx + width]
    return out


@pytest.mark.parametrize("sigma, radius", [(0.5, 0), (1.0, 0), (2.0, 0), (1.3, 2), (3.0, 9)])
def test_gaussian_kernel_sums_to_one(sigma, radius):
    kernel = gaussian_kernel1d(sigma, radius or 4)
    assert kernel.shape == (2 * (radius or 4) + 1,)
    assert abs(kernel.sum().item() - 1.0) < 1e-6
    assert torch.equal(kernel, kernel.flip(0))


def test_gaussian_blur_of_a_constant_image_is_constant():
    images = torch.full((2, 3, 20, 30), 0.7)
    blurred = gaussian_blur2d(images, sigma=2.0)
    torch.testing.assert_close(blurred, images, rtol=0, atol=1e-6)


def test_gaussian_blur_of_an_impulse_is_a_gaussian():
    sigma = 2.0
    impulse = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    impulse[0, 0, 20, 20] = 1.0
    blurred = gaussian_blur2d(impulse, sigma)[0, 0]  # radius ceil(3 sigma) = 6
    positions = torch.arange(-20, 21, dtype=torch.float64)
    squared = positions.view(-1, 1) ** 2 + positions.view(1, -1) ** 2
    continuous = torch.exp(-squared / (2 * sigma**2)) / (2 * torch.pi * sigma**2)
    continuous[squared.sqrt() > 6] = 0  # outside the truncated kernel's reach (roughly)
    inside = (positions.abs().view(-1, 1) <= 6) & (positions.abs().view(1, -1) <= 6)
    assert (blurred[~inside] == 0).all()
    assert abs(blurred.sum().item() - 1.0) < 1e-9
    # Truncation at 3 sigma leaves the normalised kernel about 0.3% above the continuous one.
    centre = slice(20 - 4, 20 + 5)
    torch.testing.assert_close(blurred[centre, centre], continuous[centre, centre],
                               rtol=1e-2, atol=1e-5)
    assert blurred.argmax().item() == 20 * 41 + 20


@pytest.mark.parametrize("sigma, radius, height, width",
                         [(1.0, 0, 16, 20), (2.0, 0, 9, 13), (1.5, 7, 5, 4), (0.8, 1, 3, 1)])
def test_gaussian_blur_matches_direct_convolution(sigma, radius, height, width):
    images = random_rgbf32(1, height, width).double()
    ours = gaussian_blur2d(images, sigma, radius)
    used_radius = radius or int(numpy.ceil(3 * sigma))
    for channel in range(3):
        reference = numpy_gaussian_blur(images[0, channel].numpy(), sigma, used_radius)
        numpy.testing.assert_allclose(ours[0, channel].numpy(), reference, rtol=0, atol=1e-12)


def test_gaussian_blur_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    images = random_rgbf32(2, 19, 27).double()
    for sigma in (0.7, 1.0, 2.5):
        radius = int(numpy.ceil(3 * sigma))
        ours = gaussian_blur2d(images, sigma)
        for batch in range(2):
            for channel in range(3):
                reference = ndimage.gaussian_filter(images[batch, channel].numpy(), sigma,
                                                    mode="mirror", radius=radius)
                numpy.testing.assert_allclose(ours[batch, channel].numpy(), reference,
                                              rtol=0, atol=1e-10)


def test_reflect_indices_mirror_without_repeating_the_edge():
    assert reflect_indices(4, 3).tolist() == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert reflect_indices(2, 3).tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert reflect_indices(1, 2).tolist() == [0, 0, 0, 0, 0]
    torch_padded = torch.nn.functional.pad(torch.arange(6.0).view(1, 1, 6), (4, 4),
                                           mode="reflect")
    assert reflect_indices(6, 4).tolist() == torch_padded.view(-1).long().tolist()


def test_reflect_pad_is_the_same_with_and_without_torch_padding():
    data = random_rgb24(2, 9, 7)
    rows, columns = reflect_indices(9, 3), reflect_indices(7, 3)
    expected = data.index_select(-2, rows).index_select(-1, columns)
    assert torch.equal(reflect_pad2d(data, 3), expected)  # torch's reflect padding
    assert torch.equal(reflect_pad2d(data, 8)[..., 5:-5, 5:-5], expected)  # indices


def test_gaussian_blur_rejects_integer_images():
    with pytest.raises(ValueError, match="floating point"):
        gaussian_blur2d(random_rgb24(1, 8, 8), 1.0)


# ---------------------------------------------------------------------------------------
# median


def numpy_median(plane: numpy.ndarray, size: int) -> numpy.ndarray:
    padded = numpy.pad(plane, size // 2, mode="reflect")
    windows = numpy.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return numpy.median(windows.reshape(plane.shape + (size * size,)), axis=-1).astype(plane.dtype)


def test_median_removes_salt_and_pepper_from_a_flat_image():
    generator = torch.Generator().manual_seed(3)
    flat = torch.full((2, 3, 30, 40), 128, dtype=torch.uint8)
    noisy = flat.clone()
    # Impulses at least 3 pixels apart (borders included), each randomly white or black.
    rows = torch.arange(0, 30, 4)
    columns = torch.arange(0, 40, 3)
    values = torch.randint(0, 2, (2, 3, len(rows), len(columns)), generator=generator) * 255
    noisy[:, :, rows.view(-1, 1), columns.view(1, -1)] = values.to(torch.uint8)
    assert not torch.equal(noisy, flat)
    filter = MedianFilter()
    setup_filter(filter, 30, 40)
    assert torch.equal(filter.process(make_frames(noisy, "rgb24")).data, flat)
    as_float = filter.process(make_frames(to_float(noisy), "rgbf32")).data
    assert torch.equal(as_float, to_float(flat))


@pytest.mark.parametrize("size", [3, 5, 7])
def test_median_matches_numpy_reference(size):
    data = random_rgb24(2, 13, 17, seed=size)
    ours = median_blur2d(data, size)
    assert ours.dtype == torch.uint8
    for batch in range(2):
        for channel in range(3):
            expected = numpy_median(data[batch, channel].numpy(), size)
            assert numpy.array_equal(ours[batch, channel].numpy(), expected)


@pytest.mark.parametrize("size", [3, 5])
def test_median_matches_scipy(size):
    ndimage = pytest.importorskip("scipy.ndimage")
    data = random_rgb24(2, 21, 18, seed=size)
    ours = median_blur2d(data, size)
    for batch in range(2):
        for channel in range(3):
            expected = ndimage.median_filter(data[batch, channel].numpy(), size=size,
                                             mode="mirror")
            assert numpy.array_equal(ours[batch, channel].numpy(), expected)


def test_median_of_rgbf32_equals_median_of_rgb24():
    data = random_rgb24(2, 12, 15)
    assert torch.equal(median_blur2d(to_float(data), 5), to_float(median_blur2d(data, 5)))


def test_median_in_strips_equals_at_once(monkeypatch):
    import vdf_stream.filters.median as median_module

    data = random_rgb24(2, 19, 11)
    at_once = median_blur2d(data, 3)
    monkeypatch.setattr(median_module, "WINDOW_ELEMENTS_PER_STEP", 2 * 3 * 11 * 9 * 4)
    assert torch.equal(median_blur2d(data, 3), at_once)


def test_median_of_an_image_smaller_than_the_window():
    data = random_rgb24(1, 2, 3)
    result = median_blur2d(data, 5)  # the mirror repeats (numpy's "reflect" does the same)
    for channel in range(3):
        assert numpy.array_equal(result[0, channel].numpy(),
                                 numpy_median(data[0, channel].numpy(), 5))
