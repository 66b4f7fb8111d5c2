# Solutions of notebook 02_ewc_loss (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] l2-ewc
def l2_loss(pred, target):
    """Eq. 2: the mean over every element of (y - y_hat)^2; pred, target (B, K, H, W) -> a 0-d tensor."""
    ### BEGIN SOLUTION
    return ((target - pred) ** 2).mean()
    ### END SOLUTION


def ewc_loss(pred, target, alpha=40.0):
    """Eq. 3: the mean over every element of alpha^y * (y - y_hat)^2, the weight taken from the target y."""
    ### BEGIN SOLUTION: one weight per pixel, alpha ** target
    return (alpha ** target * (target - pred) ** 2).mean()
    ### END SOLUTION


# %% [exercise] adaptive-wing
def adaptive_wing_loss(pred, target, omega=14.0, theta=0.5, epsilon=1.0, alpha=2.1):
    """Adaptive Wing (Wang, Bo & Fuxin, ICCV 2019): the mean over every element of AW(y, y_hat) -> a 0-d tensor.

    alpha is the a of the formula above (not EWC's alpha); A and C depend on each pixel's target.
    """
    delta = (target - pred).abs()                      # (B, K, H, W): |y - y_hat|
    power = alpha - target                             # (B, K, H, W): the exponent a - y
    ### BEGIN SOLUTION: A and C per pixel, both pieces, torch.where(delta < theta, ...), the mean
    ratio = theta / epsilon
    big_a = omega / (1 + ratio ** power) * power * ratio ** (power - 1) / epsilon
    big_c = theta * big_a - omega * torch.log1p(ratio ** power)
    small = omega * torch.log1p((delta / epsilon) ** power)       # delta < theta: logarithmic
    large = big_a * delta - big_c                                 # otherwise: linear
    return torch.where(delta < theta, small, large).mean()
    ### END SOLUTION


# %% [exercise] ewc-quarter-radius
def ewc_quarter_radius(alpha=40.0, sigma=10.0):
    """(y*, d*): the target value y* at which the EWC weight alpha ** y is 10, and the distance d* in pixels from
    the landmark at which the Eq. 1 target has that value."""
    ### BEGIN SOLUTION
    y_star = math.log(10) / math.log(alpha)                # alpha ** y = 10
    d_star = sigma * math.sqrt(-2 * math.log(y_star))      # Eq. 1: exp(-d^2 / (2 sigma^2)) = y*
    return y_star, d_star
    ### END SOLUTION
