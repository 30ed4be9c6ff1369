# R's numbers for the weighted comparison of study_spec §5.1-5.6 on data sets other than the
# shared lung reference: the same R calls as ../shared/reference/r_beyond/r_beyond.R, on
# propensity models whose candidate covariates include ones that R's glm leaves out (aliased:
# NA coefficients from its pivoted QR) and ones with a level seen in one treatment group only
# (left out before the fit, study_spec §5.6), plus the robust score test of a weighted Cox model
# whose estimate diverges (no event in one group).
#   veteran_aliased: survival::veteran, arm = trt 2; a constant column and two linear
#                    combinations of earlier candidates among them.
#   colon_single:    survival::colon deaths, Lev+5FU vs Obs; missing covariates (complete cases
#                    modelled, the rest counted) and a site indicator seen among Lev+5FU only.
# Usage (R 4.2.2, survival 3.5-3): Rscript r_robustness.R OUTDIR
# writes OUTDIR/NAME.csv (time, event, arm, candidates; NA kept) and OUTDIR/NAME.json.
suppressMessages(library(survival))
out <- commandArgs(TRUE)[1]
dir.create(out, showWarnings = FALSE, recursive = TRUE)

num <- function(x) ifelse(is.na(x) | is.infinite(x), "null", format(x, digits = 15))
j <- function(v) paste0("{", paste(sprintf('"%s": %s', names(v), sapply(v, num)), collapse = ", "), "}")
jl <- function(l) paste0("{", paste(sprintf('"%s": %s', names(l), unlist(l)), collapse = ", "), "}")
js <- function(v) paste0("[", paste(sprintf('"%s"', v), collapse = ", "), "]")
jstr <- function(v) paste0("{", paste(sprintf('"%s": "%s"', names(v), v), collapse = ", "), "}")
ess <- function(w) sum(w)^2 / sum(w^2)

rmst_plain <- function(time, status, tau) {          # survRM2::rmst1 (= survival rmean)
  ft <- survfit(Surv(time, status) ~ 1)
  idx <- ft$time <= tau
  wk.time <- sort(c(ft$time[idx], tau)); wk.surv <- ft$surv[idx]
  wk.n.risk <- ft$n.risk[idx]; wk.n.event <- ft$n.event[idx]
  areas <- diff(c(0, wk.time)) * c(1, wk.surv)
  wk.var <- c(ifelse((wk.n.risk - wk.n.event) == 0, 0, wk.n.event / (wk.n.risk * (wk.n.risk - wk.n.event))), 0)
  v <- sum(cumsum(rev(areas[-1]))^2 * rev(wk.var)[-1])
  c(rmst = sum(areas), se = sqrt(v))
}
rmst_ij <- function(dd, tau, wcol) {                 # weighted RMST, infinitesimal-jackknife variance
  dd$w_ <- dd[[wcol]]
  f <- survfit(Surv(time, event) ~ 1, data = dd, weights = w_, influence = TRUE)
  keep <- f$time <= tau
  tt <- c(0, f$time[keep], tau); S <- c(1, f$surv[keep])
  inf <- cbind(0, f$influence.surv[, keep, drop = FALSE])
  A <- drop(inf %*% diff(tt))
  c(rmst = sum(diff(tt) * S), se = sqrt(sum(A^2)))
}
contrast <- function(r1, r0) {
  z <- qnorm(0.975)
  dif <- r1[["rmst"]] - r0[["rmst"]]; se.d <- sqrt(r1[["se"]]^2 + r0[["se"]]^2)
  lr <- log(r1[["rmst"]] / r0[["rmst"]]); se.lr <- sqrt(r1[["se"]]^2 / r1[["rmst"]]^2 + r0[["se"]]^2 / r0[["rmst"]]^2)
  list(difference = j(c(estimate = dif, se = se.d, lower = dif - z * se.d, upper = dif + z * se.d, p_value = 2 * pnorm(-abs(dif) / se.d))),
       ratio = j(c(estimate = exp(lr), lower = exp(lr - z * se.lr), upper = exp(lr + z * se.lr), p_value = 2 * pnorm(-abs(lr) / se.lr))))
}
km_block <- function(d, wcol, landmark) jl(as.list(sapply(c("1", "0"), function(a) {
  dd <- d[d$arm == as.integer(a), ]; dd$w_ <- dd[[wcol]]
  f <- survfit(Surv(time, event) ~ 1, data = dd, weights = w_)
  s <- summary(f, times = landmark, extend = TRUE); q <- quantile(f, 0.5, conf.int = TRUE)
  j(c(surv = s$surv, lower = s$lower, upper = s$upper, std_err = s$std.err,
      median = unname(q$quantile[1]), median_lower = unname(q$lower[1]), median_upper = unname(q$upper[1])))
})))
cox_block <- function(f) {
  se <- sqrt(f$var[1, 1]); b <- unname(coef(f))
  j(c(coef = b, hr = exp(b), robust_se = se, hr_lower = exp(b - qnorm(0.975) * se),
      hr_upper = exp(b + qnorm(0.975) * se), p_value = 2 * pnorm(-abs(b / se)),
      robust_score = unname(summary(f)$robscore["test"]), robust_score_p = unname(summary(f)$robscore["pvalue"])))
}
# E-value (VanderWeele & Ding 2017), EValue::evalues.HR's formula written out (EValue is not installed)
evalue <- function(f, rare) {
  b <- unname(coef(f)); se <- sqrt(f$var[1, 1])
  hr <- exp(b); lo <- exp(b - qnorm(0.975) * se); hi <- exp(b + qnorm(0.975) * se)
  rr <- function(h) if (rare) h else (1 - 0.5^sqrt(h)) / (1 - 0.5^sqrt(1 / h))
  e <- function(r) { r <- if (r < 1) 1 / r else r; r + sqrt(r * (r - 1)) }
  ci <- if (lo <= 1 && hi >= 1) 1 else if (hi < 1) e(rr(hi)) else e(rr(lo))
  j(c(rr = rr(hr), e_value = e(rr(hr)), e_value_ci = ci))
}
zrow <- function(f) { z <- cox.zph(f, transform = "km")$table; j(c(chisq = z["arm", "chisq"], df = z["arm", "df"], p_value = z["arm", "p"])) }

prep <- function(name) {
  if (name == "veteran_aliased") {
    v <- survival::veteran
    d <- data.frame(time = v$time, event = v$status, arm = as.integer(v$trt == 2),
                    karno60 = as.integer(v$karno >= 60), const = 1L, age60 = as.integer(v$age >= 60),
                    prior = as.integer(v$prior == 10), squamous = as.integer(v$celltype == "squamous"),
                    smallcell = as.integer(v$celltype == "smallcell"), adeno = as.integer(v$celltype == "adeno"),
                    large = as.integer(v$celltype == "large"), poor_karno = as.integer(v$karno < 60))
    # large = 1 - squamous - smallcell - adeno and poor_karno = 1 - karno60: linear combinations
    return(list(d = d, tau = 200, landmark = 100))
  }
  if (name == "colon_single") {
    c2 <- survival::colon
    c2 <- c2[c2$etype == 2 & c2$rx != "Lev", ]
    c2 <- c2[order(c2$id), ]
    d <- data.frame(time = c2$time, event = c2$status, arm = as.integer(c2$rx == "Lev+5FU"),
                    female = as.integer(c2$sex == 0), age65 = as.integer(c2$age >= 65),
                    obstruct = c2$obstruct, perfor = c2$perfor, adhere = c2$adhere,
                    nodes4 = as.integer(c2$nodes > 4), poor_differ = as.integer(c2$differ == 3),
                    extent34 = as.integer(c2$extent >= 3), surg = c2$surg)
    # a site that treated its first six patients (by id) with Lev+5FU and nobody else
    d$site_b <- 0L; d$site_b[which(d$arm == 1)[1:6]] <- 1L
    return(list(d = d, tau = 1825, landmark = 1095))
  }
}

for (name in c("veteran_aliased", "colon_single")) {
  p <- prep(name); all <- p$d
  write.csv(all, file.path(out, paste0(name, ".csv")), row.names = FALSE, na = "")
  cand <- setdiff(names(all), c("time", "event", "arm"))
  d <- all[complete.cases(all), ]                     # glm's na.omit: the modelled patients
  res <- list(covariates = js(cand), tau = num(p$tau), landmark = num(p$landmark), n = num(nrow(d)),
              n_excluded_missing = num(nrow(all) - nrow(d)))
  # aliased: glm's NA coefficients (pivoted QR of the candidates in order)
  cf0 <- coef(glm(reformulate(cand, "arm"), family = binomial, data = d))[-1]
  alias <- names(cf0)[is.na(cf0)]
  reason <- setNames(ifelse(sapply(alias, function(v) length(unique(d[[v]])) == 1), "constant", "linear_combination"), alias)
  # then a covariate with a level seen in one group only (alone it separates the groups)
  single <- Filter(function(v) !(v %in% alias) && any(table(factor(d[[v]]), d$arm) == 0), cand)
  reason <- c(reason, setNames(rep("single_group_level", length(single)), single))
  reason <- reason[cand[cand %in% names(reason)]]
  covs <- setdiff(cand, names(reason))
  res$aliased <- jstr(reason); res$modelled <- js(covs)
  # (1) propensity score and stabilized ATE weights, overlap weights
  psm <- glm(reformulate(covs, "arm"), family = binomial, data = d)
  cf <- coef(psm); names(cf)[1] <- "intercept"
  res$ps_coefficients <- j(cf)
  ps <- fitted(psm); pA <- mean(d$arm); t1 <- d$arm == 1
  d$sw <- ifelse(t1, pA / ps, (1 - pA) / (1 - ps))
  d$ow <- ifelse(t1, 1 - ps, ps)
  res$weights <- j(c(sum = sum(d$sw), min = min(d$sw), max = max(d$sw),
                     ess_treated = ess(d$sw[t1]), ess_control = ess(d$sw[!t1]),
                     q01_type3 = unname(quantile(d$sw, 0.01, type = 3)), q99_type3 = unname(quantile(d$sw, 0.99, type = 3))))
  res$overlap_weights <- j(c(sum = sum(d$ow), min = min(d$ow), max = max(d$ow),
                             ess_treated = ess(d$ow[t1]), ess_control = ess(d$ow[!t1])))
  # (2) balance (cobalt convention) of the modelled covariates, and of the ones left out
  smd <- function(v, w) { x <- d[[v]]; p1 <- mean(x[t1]); p0 <- mean(x[!t1]); den <- sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2)
    c(before = (p1 - p0) / den, after = (sum(w[t1] * x[t1]) / sum(w[t1]) - sum(w[!t1] * x[!t1]) / sum(w[!t1])) / den) }
  res$smd <- jl(lapply(setNames(covs, covs), function(v) j(smd(v, d$sw))))
  res$overlap_smd <- j(sapply(setNames(covs, covs), function(v) smd(v, d$ow)[["after"]]))
  # (3)-(4) weighted KM, Cox with robust se and robust score test, both weightings
  res$iptw_km <- km_block(d, "sw", p$landmark); res$overlap_km <- km_block(d, "ow", p$landmark)
  fc <- coxph(Surv(time, event) ~ arm, data = d, weights = sw, robust = TRUE)
  fo <- coxph(Surv(time, event) ~ arm, data = d, weights = ow, robust = TRUE)
  res$iptw_cox <- cox_block(fc); res$overlap_cox <- cox_block(fo)
  # (5) RMST: unweighted, IPTW and overlap (IJ variance)
  r1 <- rmst_plain(d$time[t1], d$event[t1], p$tau); r0 <- rmst_plain(d$time[!t1], d$event[!t1], p$tau)
  c1 <- contrast(r1, r0); res$rmst <- jl(list(arm1 = j(r1), arm0 = j(r0), difference = c1$difference, ratio = c1$ratio))
  for (w in c("sw", "ow")) {
    w1 <- rmst_ij(d[t1, ], p$tau, w); w0 <- rmst_ij(d[!t1, ], p$tau, w); c2 <- contrast(w1, w0)
    res[[if (w == "sw") "iptw_rmst" else "overlap_rmst"]] <- jl(list(arm1 = j(w1), arm0 = j(w0), difference = c2$difference, ratio = c2$ratio))
  }
  # (6), (8) cox.zph: the unweighted model on arm + modelled covariates; the weighted fits
  z <- cox.zph(coxph(reformulate(c("arm", covs), "Surv(time, event)"), data = d), transform = "km")$table
  res$cox_zph <- jl(setNames(lapply(rownames(z), function(r) j(c(chisq = z[r, "chisq"], df = z[r, "df"], p_value = z[r, "p"]))), rownames(z)))
  res$iptw_cox_zph <- zrow(fc); res$overlap_cox_zph <- zrow(fo)
  # (9) E-values, as the outcome is (rare) and as if it were rare
  rare <- mean(d$event) < 0.15
  res$outcome_rare <- tolower(as.character(rare))
  res$iptw_evalue <- evalue(fc, rare); res$overlap_evalue <- evalue(fo, rare)
  res$iptw_evalue_rare <- evalue(fc, TRUE); res$overlap_evalue_rare <- evalue(fo, TRUE)
  # (10) truncation counts; (11) unadjusted Cox on the modelled patients
  q <- quantile(d$sw, c(0.01, 0.99), type = 3)
  res$truncation <- j(c(clipped_low = sum(d$sw < q[1]), clipped_high = sum(d$sw > q[2])))
  fu <- coxph(Surv(time, event) ~ arm, data = d)
  res$unadjusted_cox <- j(c(hr = unname(exp(coef(fu))), p_value = unname(summary(fu)$coefficients[1, 5])))
  # the robust score test when the weighted Cox estimate diverges: no event among the treated
  d$event0 <- ifelse(t1, 0L, d$event)
  f0 <- suppressWarnings(coxph(Surv(time, event0) ~ arm, data = d, weights = sw, robust = TRUE))
  res$noevent_cox <- j(c(robust_score = unname(summary(f0)$robscore["test"]), df = unname(summary(f0)$robscore["df"]),
                         robust_score_p = unname(summary(f0)$robscore["pvalue"])))
  writeLines(jl(res), file.path(out, paste0(name, ".json")))
  cat(name, ": n =", nrow(d), "of", nrow(all), ", treated =", sum(d$arm), ", events =", sum(d$event),
      ", left out:", paste(names(reason), reason, sep = "=", collapse = " "), "\n")
}
