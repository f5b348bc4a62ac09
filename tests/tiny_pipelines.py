"""Tiny random image- and text-to-video pipelines, built offline and saved with ``save_pretrained``.

The diffusion engine loads real checkpoints through ``from_pretrained``; these folders have the
same layout as the published Diffusers repos (``model_index.json`` + one folder per component,
safetensors weights), only with a few thousand random parameters, so the engine's real loading
and generation code runs on a CPU in a fraction of a second. Recipes follow diffusers' own
pipeline tests; tokenizers are built from in-memory vocabularies so nothing is downloaded.

``build_all(folder)`` writes one folder per family and returns {family name: path}.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

WAN21_I2V = "wan2.1-i2v"
WAN21_FLF2V = "wan2.1-flf2v"
WAN22_A14B = "wan2.2-i2v-a14b"
WAN22_TI2V = "wan2.2-ti2v-5b"
WAN21_T2V = "wan2.1-t2v"
WAN22_T2V_A14B = "wan2.2-t2v-a14b"
WAN_VACE = "wan-vace"
LTX = "ltx-video"
LTX2 = "ltx-2"
ALL = (WAN21_I2V, WAN21_FLF2V, WAN22_A14B, WAN22_TI2V, WAN21_T2V, WAN22_T2V_A14B, WAN_VACE, LTX, LTX2)


def t5_tokenizer():
    from transformers import T5Tokenizer

    # transformers v5: a `tokenizers` Unigram model from an in-memory vocabulary (T5 layout:
    # <pad>=0, </s>=1, <unk>=2, pieces, then <extra_id_*>).
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    words = "a the cat dog monkey dance walk run car city sky sea slow fast camera zoom pan left right".split()
    pieces += [("\u2581" + w, -3.0) for w in words]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?"]
    pieces += [("\u2581" + c, -6.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces += [(f"<extra_id_{i}>", 0.0) for i in range(3, -1, -1)]
    return T5Tokenizer(vocab=pieces, extra_ids=4)


def _umt5(vocab_size: int):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    config = UMT5Config(
        vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, dropout_rate=0.0,
    )
    return UMT5EncoderModel(config).eval()


def _wan_transformer(in_channels: int, out_channels: int, **extra):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
        out_channels=out_channels, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32, **extra,
    )


def wan21(flf2v: bool = False):
    """Wan2.1 I2V (or FLF2V: a learned position embedding over both images' CLIP tokens)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    clip_size = 4 if flf2v else 32
    transformer = _wan_transformer(
        36, 16, image_dim=4, pos_embed_seq_len=(2 * (clip_size * clip_size + 1)) if flf2v else None
    )
    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2,
        image_size=clip_size, intermediate_size=16, patch_size=1,
    )).eval()
    return WanImageToVideoPipeline(
        transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        text_encoder=_umt5(len(tokenizer)), tokenizer=tokenizer, image_encoder=image_encoder,
        image_processor=CLIPImageProcessorPil(crop_size=clip_size, size=clip_size), transformer_2=None,
    )


def wan22_a14b():
    """Wan2.2 I2V-A14B: two experts (high noise, low noise) switched at ``boundary_ratio``."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanImageToVideoPipeline(
        transformer=_wan_transformer(36, 16), transformer_2=_wan_transformer(36, 16), vae=vae,
        scheduler=scheduler, text_encoder=_umt5(len(tokenizer)), tokenizer=tokenizer,
        image_encoder=None, image_processor=None, boundary_ratio=0.875,
    )


def wan22_ti2v():
    """Wan2.2 TI2V-5B: 48-channel Wan2.2 VAE, image as the first latent frame (``expand_timesteps``).

    The published repo's model_index names ``WanPipeline`` (text and image to video); saved the same way.
    """
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
        latents_mean=[0.0] * 48, latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        scale_factor_spatial=16, scale_factor_temporal=4, temperal_downsample=[False, True, True],
    )
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    return WanPipeline(
        transformer=_wan_transformer(48, 48), vae=vae, scheduler=scheduler,
        text_encoder=_umt5(len(tokenizer)), tokenizer=tokenizer, transformer_2=None,
        boundary_ratio=None, expand_timesteps=True,
    )


def wan_t2v(two_experts: bool = False):
    """Wan2.1 T2V (or Wan2.2 T2V-A14B with two experts): ``WanPipeline``, a 16-channel transformer
    input (noise only; image-to-video ones take 36), no image encoder."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanPipeline

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    if two_experts:
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=12.0)
    else:
        scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
    return WanPipeline(
        transformer=_wan_transformer(16, 16), transformer_2=_wan_transformer(16, 16) if two_experts else None,
        vae=vae, scheduler=scheduler, text_encoder=_umt5(len(tokenizer)), tokenizer=tokenizer,
        boundary_ratio=0.875 if two_experts else None,
    )


def wan_vace():
    """Wan2.1 VACE: a T2V transformer plus VACE blocks (at layers 0 and 2) that read the control
    video, its mask and the reference images (96 channels: 2 × 16 latent + 8×8 mask patches)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanVACEPipeline, WanVACETransformer3DModel

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    torch.manual_seed(0)
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96,
    )
    return WanVACEPipeline(
        transformer=transformer, transformer_2=None, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        text_encoder=_umt5(len(tokenizer)), tokenizer=tokenizer,
    )


def ltx_video():
    """LTX-Video 0.9.x, saved as ``LTXPipeline`` like the published repos."""
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline,
                           LTXVideoTransformer3DModel)
    from transformers import T5Config, T5EncoderModel

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, dropout_rate=0.0,
    )).eval()
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4,
        attention_head_dim=8, cross_attention_dim=32, num_layers=2, caption_channels=32,
    )
    torch.manual_seed(0)
    # Compresses like the real VAE (4×4 patches, then 2× three times: 32× in space, 8× in time), so
    # the engine's frame quantum and size multiple come out as they do for real checkpoints.
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8,
        block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False, patch_size=4, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    return LTXPipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
                       text_encoder=text_encoder, tokenizer=tokenizer)


def ltx2():
    """LTX-2: joint video + audio (audio VAE and vocoder), Gemma-3 text encoder."""
    from diffusers import (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler,
                           LTX2Pipeline, LTX2VideoTransformer3DModel)
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "<start_of_image>": 5,
             "<end_of_image>": 6, "<image_soft_token>": 7}
    for c in "abcdefghijklmnopqrstuvwxyz\u2581":
        vocab[c] = len(vocab)
    for w in "a the cat dog monkey robot dance walk camera".split():
        vocab["\u2581" + w] = len(vocab)
    for i in range(256):  # byte fallback
        vocab[f"<0x{i:02X}>"] = len(vocab)
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[])
    torch.manual_seed(0)
    config = Gemma3Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, sliding_window=8,
                         max_position_embeddings=128),
        vision_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=8, patch_size=4),
        mm_tokens_per_image=1, boi_token_index=5, eoi_token_index=6, image_token_index=7,
    )
    text_encoder = Gemma3ForConditionalGeneration(config).eval()
    # The connectors' inner width (heads x head_dim = 32) must equal the text encoder's hidden size.
    hidden, layers = config.text_config.hidden_size, config.text_config.num_hidden_layers
    torch.manual_seed(0)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
        audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
        caption_channels=hidden, rope_double_precision=False, rope_type="split",
    )
    torch.manual_seed(0)
    connectors = LTX2TextConnectors(
        caption_channels=hidden, text_proj_in_factor=layers + 1, video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_theta=10000.0,
        rope_double_precision=False, causal_temporal_positioning=False, rope_type="split",
    )
    torch.manual_seed(0)
    # The real VAE's layout with 8 channels: 4×4 patches, then spatial, temporal and two spatiotemporal
    # halvings (32× in space, 8× in time); the ratios are given as the published config gives them.
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1), spatio_temporal_scaling=(True, True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True), decoder_inject_noise=(False, False, False, False),
        upsample_residual=(False, False, False), upsample_factor=(1, 1, 1), timestep_conditioning=False,
        patch_size=4, patch_size_t=1, encoder_causal=True, decoder_causal=False,
        spatial_compression_ratio=32, temporal_compression_ratio=8,
        decoder_spatial_padding_mode="zeros",  # "reflect" needs latents over 1 pixel: test frames are tiny
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    torch.manual_seed(0)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None, in_channels=2,
        resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height", dropout=0.0,
        mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=8,
    )
    torch.manual_seed(0)
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins, hidden_channels=32,
        out_channels=2, upsample_kernel_sizes=[4, 4], upsample_factors=[2, 2], resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]], leaky_relu_negative_slope=0.1, output_sampling_rate=16000,
    )
    return LTX2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, audio_vae=audio_vae, text_encoder=text_encoder,
        tokenizer=tokenizer, connectors=connectors, transformer=transformer, vocoder=vocoder,
        processor=None, prompt_enhancer=None, duration_head=None,
    )


BUILDERS = {
    WAN21_I2V: wan21,
    WAN21_FLF2V: lambda: wan21(flf2v=True),
    WAN22_A14B: wan22_a14b,
    WAN22_TI2V: wan22_ti2v,
    WAN21_T2V: wan_t2v,
    WAN22_T2V_A14B: lambda: wan_t2v(two_experts=True),
    WAN_VACE: wan_vace,
    LTX: ltx_video,
    LTX2: ltx2,
}


# Saved next to each tiny checkpoint as its own defaults (the engine reads a model folder's
# stillreel.toml), so that `stillreel serve --engine diffusion --model FOLDER` runs in seconds on a
# CPU: two denoising steps at a 64×32 landscape bucket, at the family's native frame rate.
FOLDER_DEFAULTS = 'steps = 2\nresolution = "64x32"\n'


def build(name: str, folder: Path) -> Path:
    """Build one tiny pipeline and ``save_pretrained`` it to ``folder / name``."""
    path = Path(folder) / name
    if not (path / "model_index.json").exists():
        BUILDERS[name]().save_pretrained(path)
        (path / "stillreel.toml").write_text(FOLDER_DEFAULTS)
    return path


def build_all(folder: Path, names=ALL) -> dict[str, Path]:
    return {name: build(name, folder) for name in names}


if __name__ == "__main__":  # python tests/tiny_pipelines.py FOLDER: keep a set around for manual runs
    import sys

    for name, path in build_all(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-pipelines")).items():
        print(name, path)
