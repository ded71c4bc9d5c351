"""Prints the figures of the pipeline parity check (README.md, "Training and evaluation
pipeline") from $PARITY_OUT/pipeline/{official,ours}.json, one block per check.
usage: pipeline_compare.py"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
D = os.path.join(os.environ.get("PARITY_OUT", os.path.join(HERE, "out")), "pipeline")
off = json.load(open(os.path.join(D, "official.json")))
our = json.load(open(os.path.join(D, "ours.json")))


def g(x):
    return f"{x:.3g}" if isinstance(x, float) else str(x)


print("official code", off["official"], "| data", off["data"])
print("python packages:", ", ".join(f"{k} {v}" for k, v in off["versions"].items()))

print("\n1. Preprocessing (ValGenerator path vs our training reader), 44 images")
p = our["pre"]
for split, s in p["splits"].items():
    print(f"  {split:5s} {s['images']:2d} images: image max |diff| {g(s['image_max_abs'])} "
          f"({s['image_max_levels']} level), values differing {s['image_values_differing']}/"
          f"{s['image_values']} ({100 * s['image_values_differing'] / s['image_values']:.1f}%); "
          f"mask pixels differing {s['mask_pixels_differing']}; foreground fraction ours "
          f"{s['fg_fraction_ours']:.6f} official {s['fg_fraction_official']:.6f}")

print("\n2. Augmentation")
a = our["aug"]
n_ops = len(a["per_op"])
print(f"  same op, same input (official preprocessed tensors), {n_ops} cases "
      f"(none, 8 rot90/flip, 40 angles, x 2 images): image values differing "
      f"{a['total_on_official_input'][0]}, mask pixels differing {a['total_on_official_input'][1]}")
print(f"  end to end (our preprocessing + our op): image values differing "
      f"{a['total_end_to_end'][0]} (the 1-level resize differences moved), mask pixels differing "
      f"{a['total_end_to_end'][1]}")
print(f"  uint8 -> /255 table: {a['unit_table_mismatches']} of 256 values differ from torch's")
d = a["ours_draws"]
print(f"  ours draws ({d['samples']} samples): rotflip {d['fractions']['rotflip']:.3f} rotate "
      f"{d['fractions']['rotate']:.3f} none {d['fractions']['none']:.3f}; per epoch rotflip "
      f"{d['per_epoch_rotflip_range']}, none {d['per_epoch_none_range']}; k {d['k_hist']}, axis "
      f"{d['axis_hist']}; angles {d['angle_min']}..{d['angle_max']} ({d['angle_distinct']} values)")
o = off["aug"]
t = o["draws_torch_this"]
print(f"  official, real DataLoader (this torch {off['versions']['torch']}, numpy seeded per worker):"
      f" per epoch {t['per_epoch_counts'][0]} every epoch; kinds by position repeat: "
      f"{t['kind_by_position_repeats']}; parameters repeat: {t['params_by_position_repeat']}")
t8 = o["draws_torch_1_8"]
dist = {}
for pos in t8["positions"]:
    key = {0: "none", 1: f"rot90 k={pos[1]} flip axis {pos[2]}", 2: f"rotate {pos[1]}"}[pos[0]]
    dist[key] = dist.get(key, 0) + 1
print(f"  official under torch 1.8 (requirements.txt; workers keep numpy's seed-666 state): per "
      f"epoch {t8['per_epoch_counts']}, {a['official_1_8_distinct_ops']} distinct ops, the same "
      f"every epoch: {dist}")
print(f"  data.augment_draws reference-loader vs that table: "
      f"{a['reference_loader_positions_differing']} of {len(t8['positions'])} positions differ")

print("\n3. Loss WeightedDiceBCE(0.5, 0.5) vs segLoss (CPU backend)")
for c, v in our["loss"].items():
    print(f"  {c:10s} loss ours {v['loss_ours_logits_graph']:.7g} official f32 "
          f"{v['loss_official_f32']:.7g} f64 {v['loss_official_f64']:.7g} (rel vs f32 "
          f"{g(v['loss_rel_vs_official_f32'])}); dL/dlogits max rel vs f32 "
          f"{g(v['dlogits_max_rel_vs_official_f32'])} (official f32 vs f64 "
          f"{g(v['dlogits_official_f32_vs_f64'])}); dL/dp (same p) max rel "
          f"{g(v['dp_max_rel_vs_official_f32_unsaturated'])}, saturated |dp|>1e6 ours "
          f"{v['dp_saturated_ours']} official {v['dp_saturated_official']}")
    print(f"  {'':10s} sigmoid: {v['sigmoid_values_differing']} values differ, max "
          f"{g(v['sigmoid_max_abs'])}; misclassified pixels with zero dL/dlogit: official "
          f"{v['wrong_pixels_zero_dlogit_official']}, ours {v['wrong_pixels_zero_dlogit_ours']}")

print("\n4. Metrics (8 images: ties at 0.5, empty prediction, empty mask, both empty, all ones,"
      " perfect)")
m = our["metrics"]
print(f"  validation: Dice max |diff| {g(m['val_dice_max_abs'])}, IoU {g(m['val_iou_max_abs'])}; "
      f"epoch mean Dice {g(m['val_epoch_mean_dice_abs'])}, IoU {g(m['val_epoch_mean_iou_abs'])}")
print(f"  test: Dice max |diff| {g(m['test_dice_max_abs'])}, IoU {g(m['test_iou_max_abs'])}; "
      f"mean Dice {g(m['test_mean_dice_abs'])}, IoU {g(m['test_mean_iou_abs'])}")
print(f"  official val Dice per image {[round(x, 4) for x in off['metrics']['val_dice_per_image']]}")
print(f"  official test Dice per image {[round(x, 4) for x in off['metrics']['test_dice_per_image']]}")

print("\n5. Schedule and selection")
s = our["schedule"]
print(f"  lr of epochs 1..{s['epochs']}: our trainer vs official scheduler max |diff| "
      f"{g(s['lr_trainer_max_abs'])} (lrAt {g(s['lr_lrAt_max_abs'])})")
for i, r in enumerate(our["selection"]):
    print(f"  val-Dice sequence {i}: best checkpoints identical {r['saved_equal']} "
          f"({r['saved_ours']}); epochs run ours {r['epochs_run_ours']} official "
          f"{r['epochs_run_official']}; best epoch ours {r['best_epoch_ours']} official "
          f"{r['best_epoch_official']}")

print("\n6. Adam (5 steps, 4096 values)")
ad = our["adam"]
print(f"  max |w ours - w official f32| {g(ad['max_abs_param_diff'])}; vs official f64: ours "
      f"{g(ad['ours_vs_official_f64_max_abs'])}, official f32 {g(ad['official_f32_vs_f64_max_abs'])};"
      f" never-graded values moved: {ad['never_graded_params_moved']}; official defaults "
      f"{off['adam']['defaults']}")

print("\n7. Initialisation (state_dict entries)")
for key, label in [("init", "LViT-T"), ("init_unet", "U-Net")]:
    i = our[key]
    print(f"  {label}: {i['compared']}/{i['official_entries']} compared, missing "
          f"{i['missing_in_ours']}, extra {len(i['extra_in_ours'])}; constants (BN/LN weights and "
          f"biases, running_mean 0, running_var 1, counters, position embeddings) mismatching "
          f"{i['const_mismatches']}; random tensors {i['random_tensors']}: std ratio ours/official "
          f"{i['std_ratio_min']:.3f}..{i['std_ratio_max']:.3f} (outside [0.95, 1.05]: "
          f"{i['std_ratio_outside_0_95_1_05']}), uniform-vs-normal mismatches "
          f"{i['kind_mismatches']}, our uniform bound / official max|x| "
          f"{i['uniform_bound_over_official_max_min']:.4f}..{i['uniform_bound_over_official_max_max']:.4f};"
          f" flagged {len(i['flagged'])}")
    for f in i["flagged"]:
        print("    flagged:", f)

print("\n8. Training mode")
for k, v in our["bn"].items():
    print(f"  {k} {v['shape']} (3 training steps, then eval): output max |diff| "
          f"{g(v['train_output_max_abs'])}, running_mean {g(v['running_mean_max_abs'])}, "
          f"running_var max rel {g(v['running_var_max_rel'])}, eval output "
          f"{g(v['eval_output_max_abs'])}")
dr = our["dropout"]
print(f"  dropout sites in a training forward: ours {dr['train_sites']} with p {dr['train_ps']}, "
      f"official {dr['official']['calls_p_gt_0']} with p>0 (of {dr['official']['calls']} Dropout "
      f"calls, ps {dr['official']['ps']}); eval sites ours {dr['eval_sites']}")
print(f"  dropout op: zero fraction {dr['op_zero_fraction']:.4f}, kept values "
      f"{dr['op_kept_values']}, same mask step 1 vs 2 {dr['op_same_mask_step1_vs_step2']:.3f}, "
      f"item 0 vs 1 {dr['op_same_mask_item0_vs_item1']:.3f} (independent: "
      f"{dr['independent_masks_would_give']:.3f})")

print("\n9. Text and batching")
tb = our["text_batching"]
print(f"  read_text padding + first line: {tb['texts_differing']} of {tb['texts_compared']} texts "
      f"differ; texts under 10 tokens (ours): {tb['texts_under_10_tokens_ours']}")
print(f"  train: epochs (of 50) that are not 12 full batches of a permutation of 24: "
      f"{tb['train_epochs_not_a_full_permutation_of_12_batches']}; val {tb['val_n']} and test "
      f"{tb['test_n']} images (batch 2: no partial batch)")
