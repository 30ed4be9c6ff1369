# R's numbers for designs beyond ../shared/reference/sequential (study_spec §6.1): irregular
# look times, up to 12 looks, first looks whose boundary rpact reports as Inf, looks close
# together, a design ending before t = 1 (the looks so far), alpha 0.01-0.10; and more
# Schoenfeld event numbers. Same calls and JSON layout as the shared gs_reference.R.
# Usage: Rscript sequential_open.R sequential_open.json   (R with rpact)
suppressMessages(library(rpact))
out <- commandArgs(TRUE)[1]
designs <- list(
  list(name = "obf_12_equal", sf = "asOF", alpha = 0.05, t = (1:12) / 12),
  list(name = "pocock_12_irregular", sf = "asP", alpha = 0.05,
       t = c(0.05, 0.1, 0.18, 0.25, 0.33, 0.4, 0.52, 0.6, 0.71, 0.8, 0.93, 1)),
  list(name = "obf_12_irregular_alpha10", sf = "asOF", alpha = 0.10,
       t = c(0.07, 0.15, 0.2, 0.31, 0.38, 0.45, 0.5, 0.66, 0.7, 0.81, 0.9, 1)),
  list(name = "pocock_12_alpha01", sf = "asP", alpha = 0.01,
       t = c(0.02, 0.1, 0.15, 0.22, 0.3, 0.45, 0.5, 0.55, 0.6, 0.75, 0.9, 1)),
  list(name = "obf_tiny_first", sf = "asOF", alpha = 0.05, t = c(0.01, 0.3, 0.6, 1)),
  list(name = "obf_two_tiny_alpha01", sf = "asOF", alpha = 0.01, t = c(0.005, 0.02, 0.5, 1)),
  list(name = "obf_first_above_7_5", sf = "asOF", alpha = 0.05, t = c(0.085, 0.5, 1)),
  list(name = "obf_irregular_alpha01", sf = "asOF", alpha = 0.01,
       t = c(0.12, 0.15, 0.4, 0.45, 0.7, 1)),
  list(name = "pocock_alpha10", sf = "asP", alpha = 0.10, t = c(0.2, 0.3, 0.65, 1)),
  list(name = "obf_close_looks", sf = "asOF", alpha = 0.05, t = c(0.3, 0.32, 0.34, 1)),
  list(name = "pocock_close_looks", sf = "asP", alpha = 0.05, t = c(0.5, 0.52, 0.9, 0.92, 1)),
  list(name = "obf_looks_so_far", sf = "asOF", alpha = 0.05, t = c(0.25, 0.5, 0.62)),
  list(name = "pocock_looks_so_far_alpha025", sf = "asP", alpha = 0.025, t = c(0.1, 0.4, 0.47)),
  list(name = "pocock_tiny_first", sf = "asP", alpha = 0.05, t = c(0.01, 0.5, 1))
)
num <- function(x) ifelse(is.finite(x), sprintf("%.12g", x), "null")
vec <- function(x) paste0("[", paste(num(x), collapse = ", "), "]")
items <- c()
for (d in designs) {
  g <- suppressWarnings(getDesignGroupSequential(kMax = length(d$t), alpha = d$alpha, sided = 2,
                                                 typeOfDesign = d$sf, informationRates = d$t))
  items <- c(items, sprintf('"%s": {"spending": "%s", "alpha": %s, "information_fractions": %s, "critical_z": %s, "cumulative_alpha_spent": %s, "nominal_p": %s}',
    d$name, d$sf, num(d$alpha), vec(d$t), vec(g$criticalValues), vec(g$alphaSpent), vec(2 * g$stageLevels)))
}
ss <- list(list(hr = 0.6, alloc = 35/65, power = 0.8, alpha = 0.05),
           list(hr = 0.75, alloc = 2, power = 0.9, alpha = 0.01),
           list(hr = 1.5, alloc = 1, power = 0.8, alpha = 0.10),
           list(hr = 0.5, alloc = 0.5, power = 0.85, alpha = 0.025))
ev <- c()
for (s in ss) {
  r <- getSampleSizeSurvival(alpha = s$alpha, sided = 2, beta = 1 - s$power, hazardRatio = s$hr, allocationRatioPlanned = s$alloc)
  ev <- c(ev, sprintf('{"hazard_ratio": %s, "allocation_ratio": %s, "power": %s, "alpha": %s, "events": %s}',
                      num(s$hr), num(s$alloc), num(s$power), num(s$alpha), num(r$maxNumberOfEvents)))
}
writeLines(sprintf('{"software": "R %s, rpact %s", "designs": {%s}, "schoenfeld_events": [%s]}',
  getRversion(), packageVersion("rpact"), paste(items, collapse = ", "), paste(ev, collapse = ", ")), out)
