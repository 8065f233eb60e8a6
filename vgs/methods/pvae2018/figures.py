"""Names and titles of the generation figures (Figures 4-5), shared by generate.py and report.py."""

AUDIO, IMAGE = "audio", "image"

# file name -> (modality z_s comes from, modality generated, title)
FIGURES = {
    "figure4_style_image.png": (IMAGE, IMAGE, "Style transfer, written digits: z_s from the top row, z_i from the left column"),
    "figure4_style_speech.png": (AUDIO, AUDIO, "Style transfer, spoken digits (fbank): z_s from the top row, z_a from the left column"),
    "figure5_speech_to_image.png": (AUDIO, IMAGE, "Speech to image: z_s from the spoken digit on top, z_i from the reference image on the left"),
    "figure5_image_to_speech.png": (IMAGE, AUDIO, "Image to speech: z_s from the written digit on top, z_a from the reference speaker on the left"),
}
