// A C entry point into kaldi-native-fbank's own OnlineFbank / OnlineMfcc, for ctypes.
//
// Why: knf's Python binding takes the waveform as a sequence and converts it sample by sample,
// and hands frames back one Python call at a time; on FSDD that is a quarter of the extraction
// time. Here the samples go in as a pointer and the frames come out with one memcpy each.
//
// Nothing is computed here: the frames come from the knf classes compiled into knf's Python
// extension module, which exports their symbols. vgs/features/knf_bulk.py builds this file
// against the headers that ship in the same wheel, with the wheel's C++ string ABI, loads the
// extension RTLD_GLOBAL so the symbols resolve, and checks the output against the Python binding
// before using it.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>

#include "kaldi-native-fbank/csrc/online-feature.h"

extern "C" {

// Field for field the options vgs.features.audio.knf_options sets; everything else keeps knf's
// default. Mirrored by KnfOptions in knf_bulk.py.
struct VgsKnfOptions {
  int32_t is_mfcc;
  float samp_freq;
  float frame_length_ms;
  float frame_shift_ms;
  float dither;
  float preemph_coeff;
  int32_t remove_dc_offset;
  int32_t round_to_power_of_two;
  int32_t snip_edges;
  char window_type[32];
  int32_t num_bins;
  float low_freq;
  float high_freq;
  int32_t use_energy;
  int32_t num_ceps;
  float cepstral_lifter;
};

}  // extern "C"

namespace {

template <class Options>
void SetCommon(const VgsKnfOptions &o, Options *opts) {
  knf::FrameExtractionOptions &f = opts->frame_opts;
  f.samp_freq = o.samp_freq;
  f.frame_length_ms = o.frame_length_ms;
  f.frame_shift_ms = o.frame_shift_ms;
  f.dither = o.dither;
  f.preemph_coeff = o.preemph_coeff;
  f.remove_dc_offset = o.remove_dc_offset != 0;
  f.window_type = std::string(o.window_type, strnlen(o.window_type, sizeof(o.window_type)));
  f.round_to_power_of_two = o.round_to_power_of_two != 0;
  f.snip_edges = o.snip_edges != 0;
  opts->mel_opts.num_bins = o.num_bins;
  opts->mel_opts.low_freq = o.low_freq;
  opts->mel_opts.high_freq = o.high_freq;
  opts->use_energy = o.use_energy != 0;
}

template <class Extractor>
int64_t Run(Extractor *extractor, float samp_freq, const float *wave, int64_t n, float *out,
            int64_t capacity) {
  // AcceptWaveform counts samples in int32; feed very long input in pieces.
  const int64_t piece = int64_t{1} << 24;
  for (int64_t start = 0; start < n; start += piece) {
    extractor->AcceptWaveform(samp_freq, wave + start,
                              static_cast<int32_t>(std::min(piece, n - start)));
  }
  extractor->InputFinished();
  const int64_t frames = extractor->NumFramesReady();
  const int32_t dim = extractor->Dim();
  for (int64_t t = 0; t < std::min(frames, capacity); ++t) {
    std::memcpy(out + t * dim, extractor->GetFrame(static_cast<int32_t>(t)), dim * sizeof(float));
  }
  return frames;
}

void Report(const char *what, char *error, int64_t error_size) {
  if (error != nullptr && error_size > 0) {
    std::strncpy(error, what, error_size - 1);
    error[error_size - 1] = '\0';
  }
}

}  // namespace

extern "C" {

// Features of `n` samples into `out` (row-major, `capacity` rows of the extractor's dim).
// Returns the number of frames knf produced, which may exceed `capacity` (then only `capacity`
// rows are written), or -1 with a message in `error`.
int64_t vgs_knf_compute(const VgsKnfOptions *o, const float *wave, int64_t n, float *out,
                        int64_t capacity, char *error, int64_t error_size) {
  try {
    if (o->is_mfcc) {
      knf::MfccOptions opts;
      SetCommon(*o, &opts);
      opts.num_ceps = o->num_ceps;
      opts.cepstral_lifter = o->cepstral_lifter;
      knf::OnlineMfcc extractor(opts);
      return Run(&extractor, o->samp_freq, wave, n, out, capacity);
    }
    knf::FbankOptions opts;
    SetCommon(*o, &opts);
    knf::OnlineFbank extractor(opts);
    return Run(&extractor, o->samp_freq, wave, n, out, capacity);
  } catch (const std::exception &exc) {
    Report(exc.what(), error, error_size);
  } catch (...) {
    Report("unknown C++ exception in kaldi-native-fbank", error, error_size);
  }
  return -1;
}

// Lets the loader check that the library it found is this file's build.
int32_t vgs_knf_abi_version() { return 1; }

}  // extern "C"
